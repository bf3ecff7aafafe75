"""Modbus TCP through pymodbus: holding or input registers decoded, scaled and given units."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from edge.config import ModbusTcpSensor, RegisterMap
from edge.sensors.base import SensorAdapter, SensorError
from smartsite.protocol.messages import Reading

_FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


def decode(registers: list[int], reg: RegisterMap) -> float:
    """The raw value of ``reg`` from its 16-bit registers (big-endian bytes in each word)."""
    words = list(registers[: reg.count])
    if len(words) != reg.count:
        raise SensorError(f"register {reg.address}: got {len(words)} words, need {reg.count}")
    if reg.word_order == "little":
        words.reverse()
    data = b"".join(struct.pack(">H", w & 0xFFFF) for w in words)
    return float(struct.unpack(_FORMATS[reg.data_type], data)[0])


class ModbusTcpAdapter(SensorAdapter):
    """Reads each configured register (one request per contiguous block of a table)."""

    config: ModbusTcpSensor

    def __init__(self, config: ModbusTcpSensor) -> None:
        super().__init__(config)
        self._client = None

    def _connect(self):  # type: ignore[no-untyped-def]
        from pymodbus.client import ModbusTcpClient

        if self._client is None:
            c = self.config
            self._client = ModbusTcpClient(c.host, port=c.port, timeout=c.timeout_s, retries=0)
        if not self._client.connected and not self._client.connect():
            self._client = None
            raise SensorError(f"cannot connect to {self.config.host}:{self.config.port}")
        return self._client

    def _blocks(self) -> list[tuple[str, int, int, list[RegisterMap]]]:
        """(table, start, count, registers) blocks of adjacent registers, at most 120 words."""
        blocks: list[tuple[str, int, int, list[RegisterMap]]] = []
        for reg in sorted(self.config.registers, key=lambda r: (r.table, r.address)):
            if blocks:
                table, start, count, regs = blocks[-1]
                end = reg.address + reg.count
                if table == reg.table and reg.address <= start + count and end - start <= 120:
                    blocks[-1] = (table, start, max(count, end - start), [*regs, reg])
                    continue
            blocks.append((reg.table, reg.address, reg.count, [reg]))
        return blocks

    def poll(self) -> list[Reading]:
        from pymodbus.exceptions import ModbusException

        client = self._connect()
        now = datetime.now(UTC)
        out: list[Reading] = []
        for table, start, count, regs in self._blocks():
            read = (
                client.read_holding_registers if table == "holding" else client.read_input_registers
            )
            try:
                resp = read(start, count=count, device_id=self.config.unit_id)
            except ModbusException as e:
                raise SensorError(f"{table} registers {start}..{start + count - 1}: {e}") from e
            if resp.isError():
                raise SensorError(f"{table} registers {start}..{start + count - 1}: {resp}")
            for reg in regs:
                off = reg.address - start
                raw = decode(resp.registers[off : off + reg.count], reg)
                out.append(
                    Reading(
                        metric=reg.metric,
                        value=raw * reg.scale + reg.offset,
                        unit=reg.unit,
                        time=now,
                        source=reg.source or self.id,
                    )
                )
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
