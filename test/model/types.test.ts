import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { serviceKey } from '../../control/model/types.js';

test('serviceKey names IPv4, IPv6 and all-ports services', () => {
  assert.is(serviceKey({ vip: '198.18.0.10', port: 80, protocol: 'tcp' }), 'tcp/198.18.0.10:80');
  assert.is(serviceKey({ vip: 'fd00::10', port: 53, protocol: 'udp' }), 'udp/[fd00::10]:53');
  assert.is(serviceKey({ vip: '198.18.0.10', port: 0, protocol: 'tcp' }), 'tcp/198.18.0.10:*');
});

test.run();
