// stats.ts: a STATS-phase filter: counts requests in on_log with a metric of its
// own, keeps the last path it saw in shared data, and ticks on a timer.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import { RootContext, Context, registerRootContext, Counter, get_property, set_shared_data, set_tick_period_milliseconds } from "@gcoredev/proxy-wasm-sdk-as/assembly";

let requests: Counter | null = null;
let ticks: Counter | null = null;

class StatsRoot extends RootContext {
  onConfigure(configuration_size: u32): bool {
    super.onConfigure(configuration_size);
    requests = new Counter("wasm_stats_requests");
    ticks = new Counter("wasm_stats_ticks");
    set_tick_period_milliseconds(20);
    return true;
  }
  onTick(): void {
    ticks!.increment(1);
  }
  createContext(context_id: u32): Context {
    return new StatsFilter(context_id, this);
  }
}

class StatsFilter extends Context {
  constructor(context_id: u32, root_context: StatsRoot) {
    super(context_id, root_context);
  }

  onLog(): void {
    requests!.increment(1);
    set_shared_data("last_path", get_property("request\0path"));
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new StatsRoot(context_id);
}, "stats");
