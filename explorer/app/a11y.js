// Keyboard and screen-reader help for the page, loaded in its <head> by explorer.app.ui.launch_options.
// What Gradio 6.31 does not do itself: tabs that follow the arrow keys, radios of one control as one group, example
// buttons with a name, and the patch pictures (the picker, the dropper) pickable by keyboard. Each fix is applied
// again whenever Gradio re-renders (one MutationObserver, at most once a frame).
(() => {
  'use strict';
  // The window's width, in a cookie that every event's request carries: on a narrow screen the app draws its figures'
  // panels one under another (explorer/app/screen.py). In a cross-site frame (a Space) only a partitioned cookie is
  // sent; where none is, the figures are drawn for a wide screen.
  function reportWidth() {
    const where = location.protocol === 'https:' ? '; SameSite=None; Secure; Partitioned' : '; SameSite=Lax';
    document.cookie = `vit-width=${Math.round(window.innerWidth)}; path=/${where}`;
  }
  reportWidth();
  window.addEventListener('resize', reportWidth);
  // Pictures whose clicks choose a patch: their alt text (explorer.app.views) starts "Patch grid, R × C patches";
  // or a head (the heads switchboard): "Head grid, L × h heads".
  const PICKABLE = '#picker button, #view-why-dropper button, #view-eq2-switchboard button';
  const GRID = /(\d+) × (\d+) (patches|heads)/;

  function tabsFollowArrows(tab) {
    tab.addEventListener('keydown', event => {
      const keys = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: 'first', End: 'last'};
      if (!(event.key in keys)) return;
      const tabs = Array.from(tab.closest('[role=tablist]').querySelectorAll('[role=tab]'));
      const here = tabs.indexOf(tab), move = keys[event.key];
      const next = move === 'first' ? 0 : move === 'last' ? tabs.length - 1 : (here + move + tabs.length) % tabs.length;
      event.preventDefault();
      tabs[next].focus();
      tabs[next].click();  // the same event as a mouse click: the step is drawn
    });
  }

  function radiosAsOneGroup(fieldset) {
    // Gradio names each radio input differently, so each is its own group: one name makes the arrows move between
    // them, as in any radio group.
    const name = 'group-' + fieldset.id;
    for (const input of fieldset.querySelectorAll('input[type=radio]')) if (input.name !== name) input.name = name;
  }

  function nameExample(button) {
    const img = button.querySelector('img');
    if (!img || !img.src) return;
    const file = decodeURIComponent(img.src.split('/').pop().split('?')[0]);
    const label = 'Example image: ' + file;
    if (button.getAttribute('aria-label') !== label) button.setAttribute('aria-label', label);
    if (img.getAttribute('alt') !== '') img.setAttribute('alt', '');  // the button's name says it
  }

  // A patch picture by keyboard: the arrows move a cursor over the grid, Enter or Space clicks the patch under it
  // (a click at the patch's centre: Gradio's own select event, as a mouse click sends it).
  function grid(button) {
    const img = button.querySelector('img');
    const match = img && GRID.exec(img.alt || '');
    return match ? {img, rows: +match[1], cols: +match[2], heads: match[3] === 'heads'} : null;
  }

  function shown(img) {  // the picture's box on screen (object-fit: contain, never enlarged), as Gradio computes it
    const r = img.getBoundingClientRect();
    const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
    const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
    return {left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, width: w, height: h, box: r};
  }

  function drawCursor(button) {
    const g = grid(button);
    if (!g || !g.img.naturalWidth) return;
    const cursor = button.__cursor || 0;
    const row = Math.floor(cursor / g.cols), col = cursor % g.cols;
    const s = shown(g.img), host = button.getBoundingClientRect();
    let mark = button.querySelector('.vit-cursor');
    if (!mark) {
      mark = document.createElement('span');
      mark.className = 'vit-cursor';
      mark.setAttribute('aria-hidden', 'true');
      button.appendChild(mark);
    }
    Object.assign(mark.style, {left: (s.left - host.left + s.width * col / g.cols) + 'px',
                               top: (s.top - host.top + s.height * row / g.rows) + 'px',
                               width: (s.width / g.cols) + 'px', height: (s.height / g.rows) + 'px'});
    let live = button.parentElement.querySelector('.vit-live');
    if (!live) {
      live = document.createElement('span');
      live.className = 'vit-live';
      live.setAttribute('aria-live', 'polite');
      button.parentElement.appendChild(live);
    }
    // Written only when it changes: a write is a DOM change, which would call apply() (and so this) again next frame,
    // forever while the picture has focus.
    const words = g.heads ? `Cursor on layer ${row + 1}, head ${col + 1}; Enter switches it off or on.`
                          : `Cursor on patch ${cursor} (row ${row}, column ${col}); Enter picks it.`;
    if (live.textContent !== words) live.textContent = words;
  }

  function pickable(button) {
    button.setAttribute('aria-keyshortcuts', 'ArrowUp ArrowDown ArrowLeft ArrowRight Enter');
    button.addEventListener('focus', () => drawCursor(button));
    button.addEventListener('keydown', event => {
      const g = grid(button);
      if (!g) return;
      const moves = {ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0]};
      let cursor = button.__cursor || 0;
      let row = Math.floor(cursor / g.cols), col = cursor % g.cols;
      if (event.key in moves) {
        event.preventDefault();
        row = Math.min(Math.max(row + moves[event.key][0], 0), g.rows - 1);
        col = Math.min(Math.max(col + moves[event.key][1], 0), g.cols - 1);
        button.__cursor = row * g.cols + col;
        drawCursor(button);
      } else if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        const s = shown(g.img);
        button.dispatchEvent(new MouseEvent('click', {
          bubbles: true, cancelable: true, view: window,
          clientX: s.left + s.width * (col + 0.5) / g.cols, clientY: s.top + s.height * (row + 0.5) / g.rows}));
      }
    });
  }

  // An equation wider than its box scrolls sideways in it (a11y.css): a box that scrolls is reachable by keyboard
  // (Tab to it, then the arrows), and says what it is.
  function scrollableEquation(box) {
    const wide = box.scrollWidth > box.clientWidth + 1;
    if (wide && box.getAttribute('tabindex') !== '0') {
      box.setAttribute('tabindex', '0');
      box.setAttribute('role', 'group');
      box.setAttribute('aria-label', 'Equation (wider than the screen: the arrow keys scroll it)');
    } else if (!wide && box.hasAttribute('tabindex')) {
      for (const name of ['tabindex', 'role', 'aria-label']) box.removeAttribute(name);
    }
  }

  function once(element, key, fix) {
    if (element[key]) return;
    element[key] = true;
    fix(element);
  }

  function apply() {
    for (const tab of document.querySelectorAll('[role=tablist] [role=tab]')) once(tab, '__vitArrows', tabsFollowArrows);
    for (const fieldset of document.querySelectorAll('fieldset[id]')) radiosAsOneGroup(fieldset);
    for (const button of document.querySelectorAll('button.gallery-item')) nameExample(button);
    for (const box of document.querySelectorAll('.katex-display')) scrollableEquation(box);
    for (const button of document.querySelectorAll(PICKABLE)) {
      once(button, '__vitPick', pickable);
      // The switchboard loads at once: Gradio's lazy image has no size until scrolled near (far down a phone's long
      // page, never), and the keyboard cursor is drawn from its size. (Only it: a write is a DOM change.)
      const img = button.closest('#view-eq2-switchboard') && button.querySelector('img');
      if (img && img.loading !== 'eager') img.loading = 'eager';
      if (document.activeElement === button) drawCursor(button);
    }
  }

  let pending = false;
  const later = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; apply(); });
  };
  const observer = new MutationObserver(later);
  window.addEventListener('resize', later);
  const start = () => { apply(); observer.observe(document.body, {childList: true, subtree: true, attributes: true,
                                                                  attributeFilter: ['alt', 'src', 'name']}); };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
