/**
 * Kubernetes Events for what users should see with `kubectl describe`: allocations, conflicts,
 * bad input. Best effort: a failed Event is logged, never retried, never blocks the controller.
 */
import type { CoreV1Event } from '@kubernetes/client-node';
import type { Logger } from '../../log.js';
import type { ObjectRef } from '../../model/kube-desired.js';
import { describeApiError, IPPOOL_GROUP, IPPOOL_VERSION, type KubeApi } from './api-calls.js';

export const EVENT_COMPONENT = 'xdir-director';

const API_VERSION_OF_KIND: Record<string, string> = {
  Service: 'v1', ConfigMap: 'v1', Node: 'v1', IPPool: `${IPPOOL_GROUP}/${IPPOOL_VERSION}`,
};

export class EventRecorder {
  /** Events sent, newest last (bounded), for tests and `xdir status`. */
  readonly recent: { ref: ObjectRef; type: string; reason: string; message: string }[] = [];

  constructor(private readonly api: KubeApi, private readonly host: string, private readonly log: Logger) {}

  record(ref: ObjectRef, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.recent.push({ ref, type, reason, message });
    if (this.recent.length > 200) this.recent.shift();
    (type === 'Warning' ? this.log.warn : this.log.info).call(this.log, { object: `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`, reason }, message);
    const namespace = ref.namespace ?? 'default';
    const now = new Date();
    const body: CoreV1Event = {
      metadata: { generateName: `${ref.name}.`, namespace },
      involvedObject: { apiVersion: API_VERSION_OF_KIND[ref.kind], kind: ref.kind, name: ref.name, namespace: ref.namespace, uid: ref.uid },
      reason, message, type,
      source: { component: EVENT_COMPONENT, host: this.host },
      firstTimestamp: now, lastTimestamp: now, count: 1,
      reportingComponent: `xdir.io/${EVENT_COMPONENT}`, reportingInstance: this.host,
    };
    this.api.createEvent(namespace, body).catch((err) => {
      this.log.warn({ err: describeApiError(err), reason }, 'could not record an Event');
    });
  }
}
