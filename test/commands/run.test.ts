import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseRunArgs, RUN_FLAGS, runHelp, UsageError } from '../../control/commands/run.js';

test('--help lists every flag with its default', () => {
  const help = runHelp();
  for (const [name, spec] of Object.entries(RUN_FLAGS)) {
    assert.match(help, `--${name}`);
    if ('default' in spec) assert.match(help, `(default ${spec.default})`);
  }
  assert.is(parseRunArgs(['--help']), null);
});

test('flags parse with defaults; numbers and modes are checked', () => {
  const o = parseRunArgs(['--config', 'x.yaml', '--interface', 'eth0'])!;
  assert.equal(o, {
    config: 'x.yaml', interface: 'eth0', xdpMode: 'auto', ringSize: 65537, maxVips: 1024, maxBackends: 4096,
    flowTableSize: 1048576, detachOnExit: false, logFormat: 'json',
  });
  const p = parseRunArgs(['--config', 'x', '--interface', 'e', '--xdp-mode', 'generic', '--pin-root', '/sys/fs/bpf/t',
    '--ring-size', '4099', '--detach-on-exit', '--log-format', 'pretty'])!;
  assert.is(p.xdpMode, 'generic');
  assert.is(p.pinRoot, '/sys/fs/bpf/t');
  assert.is(p.ringSize, 4099);
  assert.is(p.detachOnExit, true);
  assert.is(p.logFormat, 'pretty');
});

test('bad command lines are usage errors that say what to do', () => {
  const bad: [string[], RegExp][] = [
    [['--interface', 'eth0'], /--config FILE is required/],
    [['--config', 'x'], /--interface IF is required/],
    [['--config', 'x', '--interface', 'e', '--xdp-mode', 'fast'], /not native, generic or auto/],
    [['--config', 'x', '--interface', 'e', '--ring-size', 'abc'], /--ring-size "abc" is not a positive integer/],
    [['--config', 'x', '--interface', 'e', '--bogus'], /see 'xdir run --help'/],
  ];
  for (const [argv, re] of bad) {
    try {
      parseRunArgs(argv);
      assert.unreachable(`accepted ${argv.join(' ')}`);
    } catch (err) {
      assert.instance(err, UsageError);
      assert.match((err as Error).message, re);
    }
  }
});

test.run();
