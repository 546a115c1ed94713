/**
 * Logging: pino, JSON lines on stderr by default; the `pretty` format prints
 * `time level component: msg {fields}` for people at a terminal. The format comes from
 * XDIR_LOG_FORMAT and can be switched later with setLogFormat() (the run command's --log-format),
 * whatever was imported first. Level from XDIR_LOG_LEVEL (default info).
 */
import { pino, type Logger } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

let format: LogFormat = process.env.XDIR_LOG_FORMAT === 'pretty' ? 'pretty' : 'json';

/** Switches every logger, existing and future, to `f`. */
export function setLogFormat(f: LogFormat): void {
  format = f;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

function prettyLine(line: string): string {
  const { level, time, msg, component, ...rest } = JSON.parse(line) as Record<string, unknown>;
  const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
  const t = new Date(time as number).toISOString().slice(11, 23);
  return `${t} ${LEVEL_NAMES[level as number] ?? String(level)} ${String(component ?? 'xdir')}: ${String(msg)}${extra}\n`;
}

const stream: pino.DestinationStream = {
  write(line: string) {
    process.stderr.write(format === 'pretty' ? prettyLine(line) : line);
  },
};

export const rootLogger: Logger = pino({ level: process.env.XDIR_LOG_LEVEL ?? 'info', base: undefined }, stream);

/** A child logger for one component (`xdp`, `file-source`, `kube`, `grpc`, ...). */
export function logger(component: string): Logger {
  return rootLogger.child({ component });
}
