// Installed in the app's page before its own scripts (benchmarks/page.py: context.add_init_script).
// window.__bench: arm() before an action, settle(options) after it (a promise: every event the action
// started completed, then a quiet period); collect() reads what was recorded.
(() => {
  if (window.__bench) return;
  const VIEWS = '[id^="view-"], #picker, #selection';
  const B = window.__bench = {lastMut: 0, paint: 0, paintFor: -1, armedAt: null, start: null, joins: [], joinsAt: 0,
                               pendingJoins: 0, events: {}, owners: {}, plots: [], images: [], lastAny: 0,
                               settled: 0, viewPaint: {}, reactLog: []};
  // Anything that changed, Plotly's own redraws included: the frame after the last one is "settled".
  const any = () => {
    const now = B.lastAny = performance.now();
    requestAnimationFrame(() => { if (B.lastAny === now) B.settled = performance.now(); });
  };
  // A plot is painted when the plot view's call of Plotly.react has drawn it (the frame after its promise resolves).
  // Plotly may lay a plot out again afterwards (a responsive resize): DOM mutations with nothing new on screen, so
  // mutations inside a plot count for "settled" only. Plotly arrives as window.Plotly (the plot views load it on
  // first use); its react and relayout (a layout-only update: the same traces) are wrapped in place, and the views
  // call window.Plotly.react / .relayout.
  const wrap = P => {
    if (!P || P.__benchWrapped || typeof P.react !== 'function') return;
    for (const name of ['react', 'relayout']) wrapOne(P, name);
    P.__benchWrapped = true;
  };
  const wrapOne = (P, name) => {
    const original = P[name];
    P[name] = function (gd, ...rest) {
      const called = performance.now();
      const result = original.call(this, gd, ...rest);
      const returned = performance.now();
      Promise.resolve(result).then(() => {
        const view = gd.closest && gd.closest(VIEWS);
        const where = view ? view.id : (gd.isConnected ? 'outside a view' : 'a detached plot');
        if (B.armedAt !== null) B.reactLog.push([where, called, returned, performance.now()]);
        touched([{target: gd}], true);
      });
      return result;
    };
  };
  let plotly = window.Plotly;
  wrap(plotly);
  Object.defineProperty(window, 'Plotly', {configurable: true, get: () => plotly, set: v => { plotly = v; wrap(v); }});
  // The last DOM mutation (or image load, or plot drawn) and the animation frame that follows it.
  const touched = (records, plotDrawn = false) => {
    any();
    if (!plotDrawn) {
      records = (records || []).filter(r => {
        const el = r.target && (r.target.nodeType === 1 ? r.target : r.target.parentElement);
        return !(el && el.closest && el.closest('.js-plotly-plot'));
      });
      if (!records.length) return;
    }
    const now = B.lastMut = performance.now();
    if (B.armedAt !== null) {  // where it happened: the nearest element with an id (a view, a control)
      for (const r of (records || []).slice(0, 40)) {
        const el = r.target && (r.target.nodeType === 1 ? r.target : r.target.parentElement);
        const owner = el && (el.closest(VIEWS) || el.closest('[id]'));
        B.owners[owner ? owner.id : (el ? el.tagName.toLowerCase() : '?')] = now;
      }
      // Per view (and picker, selection text): the frame after its last change. An action is painted when the
      // views its events output are; other elements (the inputs Gradio marks while an event runs, progress
      // trackers) change too, with nothing of the answer in them.
      const seen = new Set();
      for (const r of (records || [])) {
        const el = r.target && (r.target.nodeType === 1 ? r.target : r.target.parentElement);
        const view = el && el.closest && el.closest(VIEWS);
        if (view && !seen.has(view.id)) {
          seen.add(view.id);
          requestAnimationFrame(() => { B.viewPaint[view.id] = performance.now(); });
        }
      }
    }
    requestAnimationFrame(() => {
      if (B.paintFor !== B.lastMut) { B.paintFor = B.lastMut; B.paint = performance.now(); }
    });
  };
  new MutationObserver(touched).observe(document, {subtree: true, childList: true, attributes: true,
                                                   characterData: true});
  for (const type of ['load', 'error'])  // an image shown: its load, as a mutation of its element
    document.addEventListener(type, e => { if (e.target && e.target.tagName === 'IMG') touched([{target: e.target}]); },
                              true);
  // The action's start: the first input event the page sees after arm().
  for (const type of ['pointerdown', 'mousedown', 'keydown', 'input', 'change', 'click'])
    window.addEventListener(type, () => {
      if (B.armedAt !== null && B.start === null) B.start = performance.now();
    }, true);
  // Gradio's client reads its event stream with fetch: keep a copy of every message (time, size, and the
  // process_completed text, parsed after the measurement), and the event id of every queue/join.
  const message = (text, size) => {
    const now = performance.now();
    const head = text.slice(0, 300);
    const id = (/"event_id":\s*"([^"]+)"/.exec(head) || [])[1];
    const kind = (/"msg":\s*"(\w+)"/.exec(head) || [])[1];
    if (!id) return;
    const e = B.events[id] || (B.events[id] = {bytes: 0, messages: 0});
    e.bytes += size; e.messages += 1;
    if (kind === 'process_starts') e.started = now;
    if (kind === 'process_completed') { e.completed = now; e.text = text; }
  };
  const read = async stream => {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      let chunk;
      try { chunk = await reader.read(); } catch (err) { return; }
      if (chunk.done) return;
      buffer += chunk.value;
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        if (line.startsWith('data:')) message(line.slice(5), line.length + 1);
      }
    }
  };
  const original = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : (input instanceof URL ? input.href : (input && input.url) || '');
    const join = url.includes('/queue/join');
    let body = init && init.body;
    if (join && !body && input instanceof Request) { try { body = await input.clone().text(); } catch (err) {} }
    const sent = performance.now();
    if (join) B.pendingJoins += 1;
    let response;
    try { response = await original(input, init); } catch (err) { if (join) B.pendingJoins -= 1; throw err; }
    if (join) {
      response.clone().json().then(j => {
        let fn = null;
        try { fn = JSON.parse(body).fn_index; } catch (err) {}
        B.joins.push({event_id: j.event_id, fn_index: fn, sent});
      }).catch(() => {}).finally(() => { B.pendingJoins -= 1; });
    }
    if (url.includes('/queue/data') && response.body) {
      const [mine, theirs] = response.body.tee();
      read(mine);
      return new Response(theirs, {status: response.status, statusText: response.statusText,
                                   headers: response.headers});
    }
    return response;
  };
  B.arm = () => { B.armedAt = performance.now(); B.start = null; B.paint = 0; B.settled = 0; B.joinsAt = B.joins.length;
                  B.owners = {}; B.viewPaint = {}; B.reactLog = []; return B.armedAt; };
  B.collect = reason => {
    const out = {reason, armedAt: B.armedAt, start: B.start, lastMut: B.lastMut, paint: B.paint,
                 settled: Math.max(B.settled, B.paint), viewPaint: B.viewPaint, reactLog: B.reactLog, events: [],
                 owners: Object.entries(B.owners)};
    for (const j of B.joins.slice(B.joinsAt)) {
      const e = B.events[j.event_id] || {};
      const r = {event_id: j.event_id, fn_index: j.fn_index, sent: j.sent, started: e.started ?? null,
                 completed: e.completed ?? null, stream_chars: e.bytes || 0, messages: e.messages || 0};
      if (e.text) {
        try {
          const m = JSON.parse(e.text);
          const o = m.output || {};
          r.success = m.success;
          r.duration = o.duration ?? null;
          if (!m.success) r.error = String(o.error || m.title || 'error').slice(0, 300);
          r.outputs = (o.data || []).map(d => {
            const s = JSON.stringify(d === undefined ? null : d);
            return {chars: s.length, urls: (s.match(/"url":"[^"]+"/g) || []).map(u => u.slice(7, -1))};
          });
        } catch (err) { r.error = 'unreadable process_completed message: ' + err; }
        e.text = null;
      }
      out.events.push(r);
    }
    return out;
  };
  // Views on screen that are not drawn yet: a plot without Plotly's SVG (the plot views load plotly.js on first use,
  // after a pause that a quiet period alone would take for the end), an image still loading.
  B.undrawn = () => {
    const out = [];
    for (const id of B.plots) {
      const el = document.getElementById(id);
      if (el && el.offsetParent !== null && !el.querySelector('.js-plotly-plot .main-svg')) out.push(id);
    }
    for (const id of B.images) {
      const el = document.getElementById(id);
      const img = el && el.offsetParent !== null && el.querySelector('img');
      if (img && !img.complete) out.push(id);
    }
    return out;
  };
  B.settle = ({quiet, timeout, minEvents, joinWait, undrawnWait}) => new Promise(resolve => {
    const begin = performance.now();
    const tick = () => {
      const now = performance.now();
      const joins = B.joins.slice(B.joinsAt);
      const events = joins.map(j => B.events[j.event_id]);
      const done = events.every(e => e && e.completed !== undefined);
      const lastDone = Math.max(0, ...events.map(e => (e && e.completed) || 0));
      const quietFor = now - Math.max(B.lastMut, B.lastAny, lastDone);
      const started = joins.length >= minEvents && B.pendingJoins === 0;
      const undrawn = started && done && quietFor >= quiet ? B.undrawn() : null;
      let reason = null;
      if (undrawn && !undrawn.length) reason = 'quiet';
      else if (undrawn && quietFor > undrawnWait) reason = 'undrawn';
      else if (joins.length < minEvents && B.pendingJoins === 0 && now - begin > joinWait) reason = 'no event';
      else if (now - begin > timeout) reason = 'timeout';
      if (reason) resolve(Object.assign(B.collect(reason), {undrawn: undrawn || []})); else setTimeout(tick, 20);
    };
    tick();
  });
})();
