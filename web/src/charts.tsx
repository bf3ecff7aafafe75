// echarts, only the parts used (tree-shaken), and a small component around it.
import { use, init, type ComposeOption, type ECharts } from "echarts/core";
import { LineChart, ScatterChart, BarChart, type LineSeriesOption, type ScatterSeriesOption, type BarSeriesOption } from "echarts/charts";
import {
  GridComponent,
  TooltipComponent,
  LegendComponent,
  MarkLineComponent,
  DataZoomComponent,
  type GridComponentOption,
  type TooltipComponentOption,
  type LegendComponentOption,
  type MarkLineComponentOption,
  type DataZoomComponentOption,
} from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";
import { useEffect, useRef } from "preact/hooks";

use([LineChart, ScatterChart, BarChart, GridComponent, TooltipComponent, LegendComponent, MarkLineComponent, DataZoomComponent, CanvasRenderer]);

export type ChartOption = ComposeOption<
  | LineSeriesOption
  | ScatterSeriesOption
  | BarSeriesOption
  | GridComponentOption
  | TooltipComponentOption
  | LegendComponentOption
  | MarkLineComponentOption
  | DataZoomComponentOption
>;

export function Chart(props: {
  option: ChartOption;
  height?: number;
  testid?: string;
  onClick?: (params: { data?: unknown; dataIndex?: number }) => void;
}) {
  const el = useRef<HTMLDivElement>(null);
  const chart = useRef<ECharts | null>(null);
  useEffect(() => {
    if (!el.current) return;
    const c = init(el.current);
    chart.current = c;
    const ro = new ResizeObserver(() => c.resize());
    ro.observe(el.current);
    return () => {
      ro.disconnect();
      c.dispose();
      chart.current = null;
    };
  }, []);
  useEffect(() => {
    chart.current?.setOption(props.option, true);
  }, [props.option]);
  useEffect(() => {
    const c = chart.current;
    if (!c || !props.onClick) return;
    const h = props.onClick;
    c.on("click", h as never);
    return () => {
      c.off("click", h as never);
    };
  }, [props.onClick]);
  return <div class="chart" data-testid={props.testid} ref={el} style={{ height: `${props.height ?? 260}px` }} />;
}
