// The projection language as EventStoreDB defines it, in plain JavaScript, evaluated before the user's query.
// The host (engine.rs) reads the definition with __describe() and feeds events through __process().
var __def = {
  sources: { all: false, streams: [], categories: [] },
  handlers: null,
  partitionBy: null,
  foreachStream: false,
  outputState: false,
  transforms: [],
  outputTo: null,
  options: {}
};
var __states = {};
var __emitted = [];

function __builder() {
  return {
    when: function (handlers) { __def.handlers = handlers; return __builder(); },
    partitionBy: function (f) { __def.partitionBy = f; return __builder(); },
    foreachStream: function () { __def.foreachStream = true; return __builder(); },
    outputState: function () { __def.outputState = true; return __builder(); },
    transformBy: function (f) { __def.transforms.push({ map: f }); __def.outputState = true; return __builder(); },
    filterBy: function (f) { __def.transforms.push({ filter: f }); __def.outputState = true; return __builder(); },
    outputTo: function (resultStream) { __def.outputTo = resultStream; return __builder(); }
  };
}

function fromAll() { __def.sources.all = true; return __builder(); }
function fromStream(stream) { __def.sources.streams.push(String(stream)); return __builder(); }
function fromStreams() {
  var streams = Array.prototype.slice.call(arguments);
  if (streams.length === 1 && Array.isArray(streams[0])) { streams = streams[0]; }
  streams.forEach(function (s) { __def.sources.streams.push(String(s)); });
  return __builder();
}
function fromCategory(category) { __def.sources.categories.push(String(category)); return __builder(); }
function fromCategories() {
  var categories = Array.prototype.slice.call(arguments);
  if (categories.length === 1 && Array.isArray(categories[0])) { categories = categories[0]; }
  categories.forEach(function (c) { __def.sources.categories.push(String(c)); });
  return __builder();
}

function options(opts) {
  var allowed = ['$includeLinks', 'reorderEvents', 'processingLag', 'resultStreamName', 'biState'];
  for (var key in opts) {
    if (allowed.indexOf(key) < 0) { throw new Error("Unknown option '" + key + "'"); }
  }
  __def.options = opts;
}

function __json(value) { return value === undefined || value === null ? null : JSON.stringify(value); }

function emit(stream, eventType, body, metadata) {
  __emitted.push({ stream: String(stream), eventType: String(eventType), body: JSON.stringify(body), metadata: __json(metadata), isJson: true });
}
function linkTo(stream, event, metadata) {
  __emitted.push({ stream: String(stream), eventType: '$>', body: event.sequenceNumber + '@' + event.streamId, metadata: __json(metadata), isJson: false });
}
function copyTo(stream, event, metadata) {
  __emitted.push({ stream: String(stream), eventType: event.eventType, body: event.bodyRaw, metadata: __json(metadata), isJson: event.isJson });
}
function linkStreamTo(stream, linkedStream, metadata) {
  __emitted.push({ stream: String(stream), eventType: '$@', body: String(linkedStream), metadata: __json(metadata), isJson: false });
}

var __reserved = ['$init', '$initShared', '$any', '$created', '$deleted'];

function __describe() {
  var handlers = __def.handlers || {};
  var types = Object.keys(handlers).filter(function (k) { return __reserved.indexOf(k) < 0; });
  return JSON.stringify({
    sources: __def.sources,
    eventTypes: types,
    handlesAny: typeof handlers.$any === 'function',
    handlesDeleted: typeof handlers.$deleted === 'function',
    partitioned: __def.partitionBy !== null || __def.foreachStream,
    byStream: __def.foreachStream,
    outputState: __def.outputState,
    resultStream: __def.outputTo,
    options: __def.options
  });
}

function __initial() {
  var handlers = __def.handlers || {};
  return typeof handlers.$init === 'function' ? handlers.$init() : {};
}

function __parse(raw) {
  if (raw === null || raw === undefined || raw === '') { return undefined; }
  try { return JSON.parse(raw); } catch (e) { return undefined; }
}

// `input` is the host's JSON of one event; returns the partition, and what the handler emitted.
function __process(input) {
  var e = JSON.parse(input);
  var handlers = __def.handlers || {};
  var event = {
    streamId: e.streamId,
    sequenceNumber: e.sequenceNumber,
    eventType: e.eventType,
    eventId: e.eventId,
    category: e.category,
    isJson: e.isJson,
    bodyRaw: e.bodyRaw,
    metadataRaw: e.metadataRaw,
    linkMetadataRaw: e.linkMetadataRaw
  };
  event.body = e.isJson ? __parse(e.bodyRaw) : undefined;
  event.data = event.body;
  event.metadata = __parse(e.metadataRaw);
  event.linkMetadata = __parse(e.linkMetadataRaw);
  var partition = '';
  if (__def.partitionBy !== null) {
    partition = __def.partitionBy(event);
    if (partition === undefined || partition === null) { return JSON.stringify({ handled: false }); }
  } else if (__def.foreachStream) {
    partition = e.streamId;
  }
  var key = String(partition);
  event.partition = key;
  var handler = e.eventType === '$streamDeleted' ? handlers.$deleted : (handlers[e.eventType] || handlers.$any);
  if (typeof handler !== 'function') { return JSON.stringify({ handled: false }); }
  var state = Object.prototype.hasOwnProperty.call(__states, key) ? __states[key] : __initial();
  if (typeof handlers.$created === 'function' && !Object.prototype.hasOwnProperty.call(__states, key) && __def.foreachStream) {
    var created = handlers.$created(state, event);
    if (created !== undefined) { state = created; }
  }
  __emitted = [];
  var returned = handler(state, event);
  if (returned !== undefined) { state = returned; }
  __states[key] = state;
  return JSON.stringify({ handled: true, partition: key, emitted: __emitted });
}

function __state(partition) {
  var key = String(partition || '');
  return Object.prototype.hasOwnProperty.call(__states, key) ? JSON.stringify(__states[key]) : null;
}

function __result(partition) {
  var key = String(partition || '');
  if (!Object.prototype.hasOwnProperty.call(__states, key)) { return null; }
  var value = __states[key];
  for (var i = 0; i < __def.transforms.length; i++) {
    var t = __def.transforms[i];
    if (t.filter) { if (!t.filter(value)) { return null; } }
    else { value = t.map(value); }
  }
  return value === undefined ? null : JSON.stringify(value);
}

function __restore(partition, json) { __states[String(partition)] = JSON.parse(json); }

function __partitions() { return JSON.stringify(Object.keys(__states)); }
