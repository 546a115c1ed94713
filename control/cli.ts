#!/usr/bin/env node
/**
 * `xdir`: the command line. It only dispatches; each subcommand lives in control/commands/.
 */
const COMMANDS: Record<string, { summary: string; load: () => Promise<{ main(argv: string[]): Promise<number> }> }> = {
  run: { summary: 'run the director (config file or Kubernetes source)', load: () => import('./commands/run.js') },
  status: { summary: 'print the virtual services and their counters once', load: () => import('./commands/status.js') },
  top: { summary: 'live view of rates per VIP, backend and drop reason', load: () => import('./commands/top.js') },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`);
  return `usage: xdir <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\n'xdir <command> --help' lists a command's flags.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`xdir: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  return (await command.load()).main(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    console.error(`xdir: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
