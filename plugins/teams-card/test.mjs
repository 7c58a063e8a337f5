// Tests of teams-card.js's logic on the build machine's Node.js (no
// WebAssembly): node plugins/teams-card/test.mjs
//
// The host import is replaced by a stand-in module; the component itself is
// checked against a real host.
import assert from 'node:assert/strict';
import { register } from 'node:module';
import test from 'node:test';

const host = `
  export const config = (key) => globalThis.teamsCardConfig[key];
  export const log = (level, message) => globalThis.teamsCardLogs.push([level, message]);
`;
const hostUrl = 'data:text/javascript,' + encodeURIComponent(host);
register(
  'data:text/javascript,' +
    encodeURIComponent(`
      export async function resolve(specifier, context, next) {
        if (specifier === 'switchyard:plugin/host@0.1.0') return { url: ${JSON.stringify(hostUrl)}, shortCircuit: true };
        return next(specifier, context);
      }`),
);

const source = new URL('./teams-card.js', import.meta.url);
let loads = 0;

// A fresh copy of the module per config: it reads its config once.
async function plugin(config) {
  globalThis.teamsCardConfig = config;
  globalThis.teamsCardLogs = [];
  loads += 1;
  return (await import(`${source}?load=${loads}`)).transform;
}

const healthEvent = {
  version: 1,
  agent: 'csp-health-monitor',
  componentClass: 'GPU',
  checkName: 'GpuMemWatch',
  isFatal: true,
  isHealthy: false,
  message: 'GpuMemWatch on gpu-node-0784: detected',
  recommendedAction: 27,
  errorCode: ['XID_79', 'XID_48'],
  entitiesImpacted: [
    { entityType: 'GPU', entityValue: 'GPU-8fcd7f40-0722-c28e' },
    { entityType: 'PCI', entityValue: '0000:72:00.0' },
  ],
  generatedTimestamp: '2026-10-01T00:00:57.276917Z',
  nodeName: 'gpu-node-0784',
  processingStrategy: 1,
  customRecommendedAction: 'RESEAT_GPU',
};

function event(he = healthEvent, overrides = {}) {
  return {
    id: '16c0f69a-efa5-551d-aedc-5d813a9d149c',
    source: 'nvsentinel://golden/healthevents',
    type: 'com.nvidia.nvsentinel.health.v1',
    subject: 'gpu-node-0784',
    time: '2026-10-01T00:00:57.276917Z',
    datacontenttype: 'application/json',
    dataschema: 'https://example.com/schema',
    extensions: [['cluster', 'golden']],
    data: new TextEncoder().encode(JSON.stringify({ metadata: { cluster: 'golden' }, healthEvent: he })),
    ...overrides,
  };
}

function cardOf(out) {
  assert.equal(out.length, 1);
  return JSON.parse(new TextDecoder().decode(out[0].data));
}

test('a fatal event becomes an Adaptive Card message', async () => {
  const transform = await plugin({ title: '[prod]' });
  const out = transform(event());
  const ev = out[0];
  assert.equal(ev.id, '16c0f69a-efa5-551d-aedc-5d813a9d149c');
  assert.equal(ev.source, 'nvsentinel://golden/healthevents');
  assert.equal(ev.type, 'com.nvidia.nvsentinel.health.v1');
  assert.equal(ev.subject, 'gpu-node-0784');
  assert.equal(ev.time, '2026-10-01T00:00:57.276917Z');
  assert.equal(ev.datacontenttype, 'application/json');
  assert.equal(ev.dataschema, undefined);
  assert.deepEqual(ev.extensions, [['cluster', 'golden']]);
  assert.ok(ev.data instanceof Uint8Array);

  const message = cardOf(out);
  assert.equal(message.type, 'message');
  assert.equal(message.attachments.length, 1);
  const attachment = message.attachments[0];
  assert.equal(attachment.contentType, 'application/vnd.microsoft.card.adaptive');
  const card = attachment.content;
  assert.equal(card.type, 'AdaptiveCard');
  assert.equal(card.version, '1.4');
  assert.deepEqual(card.msteams, { width: 'Full' });
  const [title, facts, text] = card.body;
  assert.equal(title.type, 'TextBlock');
  assert.equal(title.text, '[prod] GpuMemWatch on gpu-node-0784: FATAL');
  assert.equal(title.color, 'attention');
  assert.equal(facts.type, 'FactSet');
  assert.deepEqual(Object.fromEntries(facts.facts.map((f) => [f.title, f.value])), {
    Node: 'gpu-node-0784',
    Check: 'GpuMemWatch',
    Component: 'GPU',
    Agent: 'csp-health-monitor',
    Fatal: 'yes',
    'Recommended action': 'CUSTOM (RESEAT_GPU)',
    'Error codes': 'XID_79, XID_48',
    Entities: 'GPU GPU-8fcd7f40-0722-c28e, PCI 0000:72:00.0',
    Time: '2026-10-01T00:00:57.276917Z',
  });
  assert.deepEqual(text, { type: 'TextBlock', text: 'GpuMemWatch on gpu-node-0784: detected', wrap: true });
});

test('the recommended action reads as its name, sent as a number or as a name', async () => {
  const transform = await plugin({});
  const shown = (he) =>
    Object.fromEntries(
      cardOf(transform(event({ ...healthEvent, customRecommendedAction: undefined, ...he }))).attachments[0].content.body[1].facts.map((f) => [f.title, f.value]),
    )['Recommended action'];
  assert.equal(shown({ recommendedAction: 15 }), 'RESTART_VM');
  assert.equal(shown({ recommendedAction: 'RESTART_VM' }), 'RESTART_VM');
  assert.equal(shown({ recommendedAction: 0 }), 'NONE');
  assert.equal(shown({ recommendedAction: 1234 }), '1234');
  assert.equal(shown({ recommendedAction: 27, customRecommendedAction: 'RESEAT_GPU' }), 'CUSTOM (RESEAT_GPU)');
});

test('severity colours and empty lists', async () => {
  const transform = await plugin({});
  const healthy = { ...healthEvent, isFatal: false, isHealthy: true, errorCode: [], entitiesImpacted: [] };
  let card = cardOf(transform(event(healthy))).attachments[0].content;
  assert.equal(card.body[0].text, 'GpuMemWatch on gpu-node-0784: healthy');
  assert.equal(card.body[0].color, 'good');
  const facts = Object.fromEntries(card.body[1].facts.map((f) => [f.title, f.value]));
  assert.equal(facts['Error codes'], '-');
  assert.equal(facts.Entities, '-');
  card = cardOf(transform(event({ ...healthEvent, isFatal: false }))).attachments[0].content;
  assert.equal(card.body[0].color, 'warning');
});

test('dropHealthy filters healthy events only', async () => {
  const transform = await plugin({ dropHealthy: 'true' });
  assert.deepEqual(transform(event({ ...healthEvent, isHealthy: true, isFatal: false })), []);
  assert.equal(transform(event()).length, 1);
});

test('events it cannot read are errors', async () => {
  const transform = await plugin({});
  assert.throws(
    () => transform(event(healthEvent, { datacontenttype: 'text/plain', data: new Uint8Array([104, 105]) })),
    /not JSON/,
  );
  assert.throws(() => transform(event(healthEvent, { data: new TextEncoder().encode('{oops') })), /not valid JSON/);
  assert.throws(() => transform(event(healthEvent, { data: undefined })), /has no data/);
  assert.throws(
    () => transform(event(healthEvent, { data: new TextEncoder().encode('{"other":1}') })),
    /not a health event/,
  );
  // What is thrown is a string: componentize-js turns it into `err(string)`.
  try {
    transform(event(healthEvent, { data: undefined }));
  } catch (e) {
    assert.equal(typeof e, 'string');
  }
});

test('a bad dropHealthy value is a config error on every call', async () => {
  const transform = await plugin({ dropHealthy: 'yes' });
  assert.throws(() => transform(event()), /config 'dropHealthy'/);
  assert.throws(() => transform(event()), /config 'dropHealthy'/);
});

test('an unexpected exception becomes an error string, not a trap', async () => {
  const transform = await plugin(null); // config() itself throws a TypeError
  try {
    transform(event());
    assert.fail('no error');
  } catch (e) {
    assert.equal(typeof e, 'string');
    assert.match(e, /^teams-card: internal error on event 16c0f69a/);
  }
});
