// Alert shapes (server/routes/alerts.py) and the live stream.
import { liveUrl } from "./api";

export interface Transition {
  at: string;
  actor: string;
  actor_role: string;
  from_status: string | null;
  to_status: string;
  note: string;
  evidence_id: string | null;
  responsible: string | null;
  deadline: string | null;
}

export interface AlertItem {
  id: string;
  project_id: string;
  device_id: string;
  source?: string;
  rule: string;
  target?: string;
  title: string;
  level: string;
  status: string;
  priority?: number;
  value?: number | null;
  threshold?: number | null;
  unit?: string;
  created_at: string;
  cleared_at?: string | null;
  deadline?: string | null;
  responsible?: string | null;
  evidence_id?: string | null;
  unpermitted_work?: boolean;
}

export interface BimRef {
  global_id: string;
  name?: string | null;
  ifc_class: string;
}

export interface BimContext {
  status: string;
  storey?: BimRef | null;
  space?: BimRef | null;
  element?: BimRef | null;
  zone?: string | null;
}

export interface AlertDetail extends AlertItem {
  camera?: string | null;
  zone?: string | null;
  detail?: string;
  occurrences?: number;
  correlation?: { bim?: BimContext | null; [k: string]: unknown } | null;
  resolution_note?: string | null;
  resolution_evidence_id?: string | null;
  transitions: Transition[];
}

export interface EvidenceOut {
  id: string;
  kind: string;
  content_type: string;
  size: number;
  received_at: string;
  url: string;
}

export interface AlertEvent {
  type: "alert";
  outbox_id: number;
  alert_id: string;
  action: string;
  audience?: string;
  project_id: string;
  created_at: string;
  payload: Record<string, unknown>;
}

/** The live stream, reconnecting with a growing pause; `onState` says whether it is open. */
export function connectLive(onEvent: (e: AlertEvent) => void, onState: (open: boolean) => void): () => void {
  let ws: WebSocket | null = null;
  let stopped = false;
  let pause = 1000;
  let timer: number | undefined;
  const open = () => {
    ws = new WebSocket(liveUrl());
    ws.onmessage = (m) => {
      try {
        const e = JSON.parse(m.data as string);
        if (e.type === "hello") {
          pause = 1000;
          onState(true);
        } else if (e.type === "alert") onEvent(e as AlertEvent);
      } catch {
        /* ignore */
      }
    };
    ws.onclose = (c) => {
      onState(false);
      if (stopped || c.code === 4401) return;
      timer = window.setTimeout(open, pause);
      pause = Math.min(pause * 2, 30000);
    };
  };
  open();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    ws?.close();
  };
}

export const ACTIVE_STATUSES = ["open", "acknowledged", "rectifying", "resolved", "reopened"];
