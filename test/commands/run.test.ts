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
  assert.equal({ ...o, observability: undefined }, {
    source: { kind: 'file', path: 'x.yaml' }, dataplane: 'auto', interface: 'eth0', xdpMode: 'auto', ringSize: 65537,
    maxVips: 1024, maxBackends: 4096, flowTableSize: 1048576, flowIdleTimeoutS: 300,
    ipvsStateFile: '/run/xdir/ipvs-services.json', detachOnExit: false, logFormat: 'json', observability: undefined,
  });
  // Safe defaults: gRPC and metrics are on, at their loopback/unix-socket defaults.
  assert.ok(o.observability.grpc !== false && o.observability.metrics !== false);
  const p = parseRunArgs(['--config', 'x', '--interface', 'e', '--xdp-mode', 'generic', '--pin-root', '/sys/fs/bpf/t',
    '--ring-size', '4099', '--detach-on-exit', '--log-format', 'pretty', '--no-metrics', '--grpc', 'unix:/tmp/x.sock'])!;
  assert.is(p.xdpMode, 'generic');
  assert.is(p.pinRoot, '/sys/fs/bpf/t');
  assert.is(p.ringSize, 4099);
  assert.is(p.detachOnExit, true);
  assert.is(p.logFormat, 'pretty');
  assert.is(p.observability.metrics, false);
  assert.is((p.observability.grpc as { address?: string }).address, 'unix:/tmp/x.sock');
});

test('the Kubernetes source and the IPVS data path are chosen by flags', () => {
  const k = parseRunArgs(['--kubeconfig', '/k', '--interface', 'eth0', '--lb-class', 'example.com/lb', '--classless-services',
    '--ingress-nginx-vip', '198.18.0.100', '--ingress-nginx-namespace', 'nginx'])!;
  assert.equal(k.source, {
    kind: 'kube',
    options: { kubeconfig: '/k', loadBalancerClass: 'example.com/lb', classlessServices: true,
      ingressNginx: { vips: ['198.18.0.100'], namespace: 'nginx' } },
  });
  const i = parseRunArgs(['--in-cluster', '--dataplane', 'ipvs'])!;
  assert.equal(i.source, { kind: 'kube', options: {} });
  assert.is(i.dataplane, 'ipvs');
  assert.is(i.interface, undefined);
});

test('bad command lines are usage errors that say what to do', () => {
  const bad: [string[], RegExp][] = [
    [['--interface', 'eth0'], /a source is required: --config FILE/],
    [['--config', 'x', '--kubeconfig', 'k', '--interface', 'e'], /either --config FILE or a Kubernetes source/],
    [['--config', 'x', '--interface', 'e', '--dataplane', 'dpdk'], /--dataplane "dpdk" is not auto, xdp, ipvs/],
    [['--kubeconfig', 'k', '--interface', 'e', '--ingress-nginx-namespace', 'n'], /need --ingress-nginx-vip/],
    [['--config', 'x', '--interface', 'e', '--stats-interval-ms', '5'], /must be an integer >= 100/],
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
