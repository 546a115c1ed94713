/**
 * Logging: pino, JSON lines by default; `XDIR_LOG_FORMAT=pretty` prints `time level component: msg {fields}`
 * for people at a terminal. Level from XDIR_LOG_LEVEL (default info).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

const pretty = process.env.XDIR_LOG_FORMAT === 'pretty';

function prettyStream(): pino.DestinationStream {
  const names: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
  return {
    write(line: string) {
      const { level, time, msg, component, pid: _pid, hostname: _h, ...rest } = JSON.parse(line);
      const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
      const t = new Date(time).toISOString().slice(11, 23);
      process.stderr.write(`${t} ${names[level] ?? level} ${component ?? 'xdir'}: ${msg}${extra}\n`);
    },
  };
}

export const rootLogger: Logger = pino(
  { level: process.env.XDIR_LOG_LEVEL ?? 'info', base: undefined },
  pretty ? prettyStream() : pino.destination(2),
);

/** A child logger for one component (`xdp`, `file-source`, `kube`, `grpc`, ...). */
export function logger(component: string): Logger {
  return rootLogger.child({ component });
}
