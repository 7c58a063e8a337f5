// Switchyard transform plugin: an NVSentinel health event becomes a Microsoft
// Teams message carrying an Adaptive Card, ready for a webhook sink that posts
// to a Teams Incoming Webhook or a Workflows ("When a Teams webhook request is
// received") URL.
//
// Built into a WebAssembly component with componentize-js (see README.md).
//
// Config (all values are strings):
//   title        optional text put before the card's title
//   dropHealthy  "true": events with isHealthy true are filtered out (default "false")

import { config, log } from 'switchyard:plugin/host@0.1.0';

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

// Read on the first call: imports cannot be called while the component is
// pre-initialised at build time. Holds { title, dropHealthy } or { error }.
let settings;

function loadSettings() {
  if (settings !== undefined) return settings;
  const title = config('title') ?? '';
  const drop = (config('dropHealthy') ?? 'false').trim().toLowerCase();
  if (drop !== 'true' && drop !== 'false') {
    settings = { error: `teams-card: config 'dropHealthy' must be "true" or "false", not "${drop}"` };
  } else {
    settings = { title, dropHealthy: drop === 'true' };
    log('debug', `teams-card: title prefix "${title}", dropHealthy ${settings.dropHealthy}`);
  }
  return settings;
}

function isJson(contenttype) {
  if (contenttype === undefined) return true; // CloudEvents: no datacontenttype means JSON
  const media = contenttype.split(';', 1)[0].trim().toLowerCase();
  return media === 'application/json' || media === 'text/json' || media.endsWith('+json');
}

function text(value, fallback = '-') {
  if (value === undefined || value === null || value === '') return fallback;
  return String(value);
}

function severity(he) {
  if (he.isHealthy === true) return { word: 'healthy', color: 'good' };
  if (he.isFatal === true) return { word: 'FATAL', color: 'attention' };
  return { word: 'unhealthy', color: 'warning' };
}

// NVSentinel's RecommendedAction numbers (what its exporter, and Switchyard
// by default, send) and their names; `mapping.enums: names` sends the names.
const ACTIONS = {
  0: 'NONE',
  2: 'COMPONENT_RESET',
  5: 'CONTACT_SUPPORT',
  6: 'RUN_FIELDDIAG',
  15: 'RESTART_VM',
  24: 'RESTART_BM',
  25: 'REPLACE_VM',
  26: 'RUN_DCGMEUD',
  27: 'CUSTOM',
  99: 'UNKNOWN',
};

function recommendedAction(he) {
  const named = typeof he.recommendedAction === 'number' ? ACTIONS[he.recommendedAction] : undefined;
  const action = text(named ?? he.recommendedAction);
  if (he.customRecommendedAction) return `${action} (${he.customRecommendedAction})`;
  return action;
}

function entities(he) {
  const list = Array.isArray(he.entitiesImpacted) ? he.entitiesImpacted : [];
  if (list.length === 0) return '-';
  return list.map((e) => `${text(e?.entityType, '?')} ${text(e?.entityValue, '?')}`).join(', ');
}

function errorCodes(he) {
  const list = Array.isArray(he.errorCode) ? he.errorCode : [];
  return list.length === 0 ? '-' : list.map((c) => text(c, '?')).join(', ');
}

// The Teams message for one health event.
function card(event, he, title) {
  const node = he.nodeName || event.subject;
  const sev = severity(he);
  const heading = `${title ? `${title} ` : ''}${text(he.checkName, 'health event')} on ${text(node, '?')}: ${sev.word}`;
  const facts = [
    ['Node', text(node)],
    ['Check', text(he.checkName)],
    ['Component', text(he.componentClass)],
    ['Agent', text(he.agent)],
    ['Fatal', he.isFatal === true ? 'yes' : 'no'],
    ['Recommended action', recommendedAction(he)],
    ['Error codes', errorCodes(he)],
    ['Entities', entities(he)],
    ['Time', text(he.generatedTimestamp ?? event.time)],
  ];
  const body = [
    { type: 'TextBlock', text: heading, size: 'Large', weight: 'Bolder', color: sev.color, wrap: true },
    { type: 'FactSet', facts: facts.map(([t, v]) => ({ title: t, value: v })) },
  ];
  if (he.message) body.push({ type: 'TextBlock', text: String(he.message), wrap: true });
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          body,
          msteams: { width: 'Full' },
        },
      },
    ],
  };
}

// world transform: result<list<cloud-event>, string>. A returned array is
// `ok`; a thrown string is `err`. componentize-js traps on anything else
// thrown (an Error object is not a string), so every exception becomes text.
export function transform(event) {
  try {
    return toCard(event);
  } catch (e) {
    if (typeof e === 'string') throw e;
    throw `teams-card: internal error on event ${event?.id}: ${e?.stack ?? e}`;
  }
}

function toCard(event) {
  const s = loadSettings();
  if (s.error) throw s.error;
  if (event.data === undefined) throw `teams-card: event ${event.id} has no data`;
  if (!isJson(event.datacontenttype)) {
    throw `teams-card: event ${event.id}: data is '${event.datacontenttype}', not JSON`;
  }
  let data;
  try {
    data = JSON.parse(decoder.decode(event.data));
  } catch (e) {
    throw `teams-card: event ${event.id}: data is not valid JSON: ${e?.message ?? e}`;
  }
  const he = data?.healthEvent;
  if (he === null || typeof he !== 'object' || Array.isArray(he)) {
    throw `teams-card: event ${event.id} (type ${event.type}) is not a health event: data has no healthEvent object`;
  }
  if (s.dropHealthy && he.isHealthy === true) return [];
  return [
    {
      id: event.id,
      source: event.source,
      type: event.type,
      subject: event.subject,
      time: event.time,
      datacontenttype: 'application/json',
      dataschema: undefined,
      extensions: event.extensions,
      data: encoder.encode(JSON.stringify(card(event, he, s.title))),
    },
  ];
}
