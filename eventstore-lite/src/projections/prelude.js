// The projection language as EventStoreDB defines it, in plain JavaScript, evaluated before the user's query.
// The host (engine.rs) reads the definition with __describe() and feeds events through __processBatch() (or
// __process() for one event). States live here, in a Map, and leave only as JSON: for a query, or all at once
// in a checkpoint (__snapshot).
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
var __states = new Map();
// biState: the state shared by every partition (the second element of the pair handlers see).
var __shared = undefined;
var __sharedDirty = false;
// Partitions changed since the host last took them (their results are written with the next checkpoint).
var __dirty = new Set();
// Partitions seen for the first time since the host last took them (`$partition` events in `…-partitions`).
var __newPartitions = [];
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

// A `$initShared` handler turns on the shared state by itself, as in EventStoreDB.
function __biState() {
  var handlers = __def.handlers || {};
  return __def.options.biState === true || typeof handlers.$initShared === 'function';
}

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

function __initialShared() {
  var handlers = __def.handlers || {};
  return typeof handlers.$initShared === 'function' ? handlers.$initShared() : {};
}

function __parse(raw) {
  if (raw === null || raw === undefined || raw === '') { return undefined; }
  try { return JSON.parse(raw); } catch (e) { return undefined; }
}

// The event object handlers see. `body` / `data`, `metadata` and `linkMetadata` are parsed on first use: a
// handler that only counts never pays for JSON it does not read. The parsed values are cached under symbols,
// which neither JSON.stringify nor for…in show. The host sends each event as a tuple (an array parses faster
// than an object): [streamId, sequenceNumber, eventType, eventId, category, isJson, bodyRaw, metadataRaw,
// linkMetadataRaw].
var __BODY = Symbol('body');
var __METADATA = Symbol('metadata');
var __LINK_METADATA = Symbol('linkMetadata');
function __Event(t, partition) {
  this.streamId = t[0];
  this.sequenceNumber = t[1];
  this.eventType = t[2];
  this.eventId = t[3];
  this.category = t[4];
  this.isJson = t[5];
  this.bodyRaw = t[6];
  this.metadataRaw = t[7];
  this.linkMetadataRaw = t[8];
  this.partition = partition;
}
function __lazy(names, symbol, parse) {
  var property = {
    get: function () {
      var value = this[symbol];
      if (value === undefined && !(symbol in this)) {
        value = parse(this);
        this[symbol] = value;
      }
      return value;
    },
    set: function (value) { this[symbol] = value; },
    enumerable: true
  };
  names.forEach(function (name) { Object.defineProperty(__Event.prototype, name, property); });
}
__lazy(['body', 'data'], __BODY, function (e) { return e.isJson ? __parse(e.bodyRaw) : undefined; });
__lazy(['metadata'], __METADATA, function (e) { return __parse(e.metadataRaw); });
__lazy(['linkMetadata'], __LINK_METADATA, function (e) { return __parse(e.linkMetadataRaw); });

// Runs the handler for one event (a tuple); returns the partition key, or null when no handler took it.
function __one(t) {
  var handlers = __def.handlers || {};
  var event = new __Event(t, '');
  var partition = '';
  if (__def.partitionBy !== null) {
    partition = __def.partitionBy(event);
    if (partition === undefined || partition === null) { return null; }
  } else if (__def.foreachStream) {
    partition = t[0];
  }
  var key = String(partition);
  event.partition = key;
  var handler = t[2] === '$streamDeleted' ? handlers.$deleted : (handlers[t[2]] || handlers.$any);
  if (typeof handler !== 'function') { return null; }
  var biState = __biState();
  var partitioned = __def.partitionBy !== null || __def.foreachStream;
  var isNew = !__states.has(key);
  var state = isNew ? __initial() : __states.get(key);
  if (biState && __shared === undefined) { __shared = __initialShared(); }
  var pair = biState ? [state, __shared] : null;
  if (isNew && partitioned) {
    __newPartitions.push(key);
    if (typeof handlers.$created === 'function') {
      var created = handlers.$created(biState ? pair : state, event);
      if (created !== undefined) { if (biState) { pair = created; } else { state = created; } }
    }
  }
  var returned = handler(biState ? pair : state, event);
  if (biState) {
    if (returned !== undefined) { pair = returned; }
    state = pair[0];
    __shared = pair[1];
    __sharedDirty = true;
  } else if (returned !== undefined) {
    state = returned;
  }
  __states.set(key, state);
  __dirty.add(key);
  return key;
}

// `input`: the JSON of one event; returns whether a handler took it, its partition and what it emitted.
function __process(input) {
  __emitted = [];
  var e = JSON.parse(input);
  var key = __one([e.streamId, e.sequenceNumber, e.eventType, e.eventId, e.category, e.isJson, e.bodyRaw,
    e.metadataRaw, e.linkMetadataRaw]);
  if (key === null) { return JSON.stringify({ handled: false }); }
  return JSON.stringify({ handled: true, partition: key, emitted: __emitted });
}

// `input`: the JSON array of a batch of events (tuples). The host's `__tick()` restarts the time limit for each
// event; it is captured here and removed from the global scope, so that a query cannot call it to escape the
// limit. Returns the number handled, or {handled, emits: [[index in the batch, [emitted…]], …]} when something
// was emitted.
var __processBatch = (function (tick) {
  return function (input) {
    var events = JSON.parse(input);
    var handled = 0;
    var emits = null;
    for (var i = 0; i < events.length; i++) {
      tick();
      __emitted = [];
      if (__one(events[i]) !== null) { handled++; }
      if (__emitted.length > 0) {
        if (emits === null) { emits = []; }
        emits.push([i, __emitted]);
      }
    }
    __emitted = [];
    return emits === null ? String(handled) : JSON.stringify({ handled: handled, emits: emits });
  };
})(__tick);
delete globalThis.__tick;

// The state a query of `partition` sees. With biState the root partition ('') is the shared state.
function __stateOf(key) {
  if (__biState() && key === '') { return __shared; }
  return __states.has(key) ? __states.get(key) : undefined;
}

function __state(partition) {
  var value = __stateOf(String(partition || ''));
  return value === undefined ? null : JSON.stringify(value);
}

function __result(partition) {
  var value = __stateOf(String(partition || ''));
  if (value === undefined) { return null; }
  for (var i = 0; i < __def.transforms.length; i++) {
    var t = __def.transforms[i];
    if (t.filter) { if (!t.filter(value)) { return null; } }
    else { value = t.map(value); }
  }
  return value === undefined ? null : JSON.stringify(value);
}

function __restore(partition, json) { __states.set(String(partition), JSON.parse(json)); }

// Every state, as one JSON object {partition: state}, for a checkpoint.
function __snapshot() {
  var out = {};
  __states.forEach(function (value, key) { out[key] = value; });
  return JSON.stringify(out);
}

function __snapshotShared() { return __shared === undefined ? null : JSON.stringify(__shared); }

// Puts back every state of a checkpoint; forgets what was there.
function __restoreAll(statesJson, sharedJson) {
  var states = JSON.parse(statesJson);
  __states = new Map();
  for (var key in states) { __states.set(key, states[key]); }
  __shared = sharedJson === '' ? undefined : JSON.parse(sharedJson);
  __dirty = new Set();
  __newPartitions = [];
  __sharedDirty = false;
}

// The partitions changed since the last call (with '' for the shared state of a biState projection).
function __takeDirty() {
  var out = [];
  __dirty.forEach(function (key) { out.push(key); });
  if (__sharedDirty && __def.partitionBy !== null || __sharedDirty && __def.foreachStream) {
    if (!__dirty.has('')) { out.push(''); }
  }
  __dirty = new Set();
  __sharedDirty = false;
  return JSON.stringify(out);
}

function __takeNewPartitions() {
  var out = __newPartitions;
  __newPartitions = [];
  return JSON.stringify(out);
}

function __partitionCount() { return String(__states.size); }

function __partitions() {
  var out = [];
  __states.forEach(function (value, key) { out.push(key); });
  return JSON.stringify(out);
}
