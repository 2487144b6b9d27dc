// The proxy's own log (not the access log): leveled lines on stderr, level
// changeable at run time through the admin /logging endpoint, as Envoy's.

export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "critical", "off"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class Logger {
  private threshold: number;

  constructor(
    level: LogLevel = "info",
    private readonly sink: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  ) {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  get level(): LogLevel {
    return LOG_LEVELS[this.threshold]!;
  }

  setLevel(level: LogLevel): void {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  log(level: Exclude<LogLevel, "off">, message: string): void {
    if (LOG_LEVELS.indexOf(level) >= this.threshold) this.sink(message);
  }
  info(message: string): void {
    this.log("info", message);
  }
  warn(message: string): void {
    this.log("warning", message);
  }
  error(message: string): void {
    this.log("error", message);
  }
}
