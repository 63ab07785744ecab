/* Frontdesk chat widget.
 *
 * Widget mode (any website):
 *   <script src="https://frontdesk.example/widget.js" data-org="ORG" data-agent="AGENT" async></script>
 *   adds a chat bubble (bottom right) that opens a chat panel.
 * Page mode (Frontdesk's own /c/{org}/{agent} page):
 *   <div id="frontdesk-chat" data-org="ORG" data-agent="AGENT" data-mode="page"></div>
 *   mounts the full-size panel into that element.
 *
 * Everything lives in an open shadow root on #frontdesk-widget, styled by
 * {script origin}/widget.css. Untrusted text (messages, names, errors) only ever
 * reaches the page as text nodes: the agent's and the team's Markdown is built as
 * elements, never through innerHTML.
 *
 * Kept plain for build.rs's simple minifier: no modules, no regex literals, no
 * template literals, explicit semicolons.
 */
(function () {
  'use strict';

  var MAX_CHARS = 4000;
  // Followed by the organization: one browser is a different visitor to each
  // business (its chat pages share this origin), so they cannot link it.
  var VISITOR_KEY = 'frontdesk:visitor:';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var TXT_UNAVAILABLE = 'This chat is not available on this site.';
  var TXT_HANDOFF = 'Talk to a person';
  // Under an answer that asks whether the visitor wants a person: a reply to
  // that question, not a second copy of the footer's button.
  var TXT_HANDOFF_YES = 'Yes, talk to a person';
  // The footer's button once asked: a disabled "Talk to a person" reads as
  // broken, this says why it is done.
  var TXT_HANDOFF_DONE = 'A person has been asked';
  var TXT_NOTE = 'A person from the team will follow up here.';
  var TXT_CLOSED = 'The team closed this conversation.';
  var TXT_START_NEW = 'Start a new conversation';
  var TXT_REOPENED = 'The team wrote again: this conversation is open once more.';
  var TXT_READY = 'Usually replies instantly';
  var CONV_KEPT_MS = 24 * 60 * 60 * 1000;
  var TXT_UNREACHABLE = 'The chat could not be reached. Check your connection and try again.';
  var ICON_CHAT = 'M20.5 11.5a8.5 8.5 0 0 1-12.2 7.66L3.5 20.5l1.34-4.5A8.5 8.5 0 1 1 20.5 11.5z';
  var ICON_CLOSE = 'M6 6l12 12M18 6L6 18';
  var ICON_SEND = 'M5 12h13M12.5 5.5L19 12l-6.5 6.5';
  var ICON_PERSON = 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4.5 20a7.5 7.5 0 0 1 15 0';

  var script = document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-agent]') ||
    document.querySelector('script[src*="widget.js"]');
  var BASE = location.origin;
  try {
    if (script && script.src) {
      BASE = new URL(script.src, location.href).origin;
    }
  } catch (e) {
    BASE = location.origin;
  }

  // ---------------------------------------------------------------------------
  // Small helpers.

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) {
      node.className = cls;
    }
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }

  function attrs(node, map) {
    Object.keys(map).forEach(function (k) {
      node.setAttribute(k, map[k]);
    });
    return node;
  }

  function icon(d, cls) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'fd-icon' + (cls ? ' ' + cls : ''));
    var path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.appendChild(path);
    return svg;
  }

  function button(cls, label, iconPath, iconCls) {
    var b = el('button', cls);
    b.type = 'button';
    if (iconPath) {
      b.appendChild(icon(iconPath, iconCls));
    }
    if (label) {
      b.appendChild(el('span', 'fd-label', label));
    }
    return b;
  }

  // Storage may be unavailable (disabled cookies, sandboxed frames): never throw.
  function storeGet(kind, key) {
    try {
      var s = window[kind];
      return s ? s.getItem(key) : null;
    } catch (e) {
      return null;
    }
  }

  function storeSet(kind, key, value) {
    try {
      var s = window[kind];
      if (!s) {
        return;
      }
      if (value === null) {
        s.removeItem(key);
      } else {
        s.setItem(key, value);
      }
    } catch (e) {
      return;
    }
  }

  function isDigits(s) {
    if (!s) {
      return false;
    }
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c < 48 || c > 57) {
        return false;
      }
    }
    return true;
  }

  function isSpace(c) {
    return c === ' ' || c === '\t' || c === '\n' || c === '\r';
  }

  // An absolute http(s) URL, normalised, or null.
  function safeUrl(raw) {
    var u = raw.trim().split(' ')[0];
    var lower = u.toLowerCase();
    if (lower.indexOf('http:') !== 0 && lower.indexOf('https:') !== 0) {
      return null;
    }
    try {
      var parsed = new URL(u);
      if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
        return parsed.href;
      }
    } catch (e) {
      return null;
    }
    return null;
  }

  function findCitation(cites, n) {
    if (!cites) {
      return null;
    }
    for (var i = 0; i < cites.length; i++) {
      if (cites[i] && Number(cites[i].n) === n) {
        return cites[i];
      }
    }
    return null;
  }

  function citationText(c, n) {
    var title = c && c.title ? String(c.title) : 'Source';
    var heading = c && c.heading ? String(c.heading) : '';
    return '[' + n + '] ' + title + (heading && heading !== title ? ' \u2014 ' + heading : '');
  }

  // ---------------------------------------------------------------------------
  // Markdown: a deliberately small subset, rendered by building DOM nodes.
  // `cites` is the message's citation list (undefined while it streams: any [n]
  // becomes a chip), or false where chips are not allowed (inside link text).

  function listItem(line) {
    var t = line.replace('\t', '    ').trimStart();
    var c = t.charAt(0);
    if ((c === '-' || c === '*' || c === '+') && t.charAt(1) === ' ') {
      return { ordered: false, text: t.slice(2) };
    }
    var j = 0;
    while (j < t.length && j < 9 && isDigits(t.charAt(j))) {
      j++;
    }
    if (j > 0 && (t.charAt(j) === '.' || t.charAt(j) === ')') && t.charAt(j + 1) === ' ') {
      return { ordered: true, num: parseInt(t.slice(0, j), 10), text: t.slice(j + 2) };
    }
    return null;
  }

  function citeNumbers(inner, cites) {
    if (cites === false) {
      return null;
    }
    var parts = inner.split(',');
    var out = [];
    for (var i = 0; i < parts.length; i++) {
      var t = parts[i].trim();
      if (!isDigits(t) || t.length > 3) {
        return null;
      }
      var n = parseInt(t, 10);
      if (cites && !findCitation(cites, n)) {
        return null;
      }
      out.push(n);
    }
    return out;
  }

  function citeChip(n, cites) {
    var sup = el('sup', 'fd-cite');
    var b = el('button', 'fd-cite-btn', String(n));
    b.type = 'button';
    b.setAttribute('data-n', String(n));
    var c = findCitation(cites, n);
    if (c) {
      b.title = citationText(c, n);
      b.setAttribute('aria-label', 'Source ' + citationText(c, n));
    } else {
      b.setAttribute('aria-label', 'Source ' + n);
    }
    sup.appendChild(b);
    return sup;
  }

  function link(href) {
    var a = el('a', 'fd-link');
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    return a;
  }

  function inline(parent, s, cites) {
    var buf = '';
    var flush = function () {
      if (buf) {
        parent.appendChild(document.createTextNode(buf));
        buf = '';
      }
    };
    var i = 0;
    while (i < s.length) {
      var c = s.charAt(i);
      var end;
      if (c === '`') {
        end = s.indexOf('`', i + 1);
        if (end > i + 1) {
          flush();
          parent.appendChild(el('code', 'fd-code', s.slice(i + 1, end)));
          i = end + 1;
          continue;
        }
      } else if (c === '*' && s.charAt(i + 1) === '*') {
        end = s.indexOf('**', i + 2);
        if (end > i + 2) {
          flush();
          var strong = el('strong');
          inline(strong, s.slice(i + 2, end), cites);
          parent.appendChild(strong);
          i = end + 2;
          continue;
        }
      } else if (c === '*') {
        end = s.indexOf('*', i + 1);
        if (end > i + 1 && !isSpace(s.charAt(i + 1)) && !isSpace(s.charAt(end - 1))) {
          flush();
          var em = el('em');
          inline(em, s.slice(i + 1, end), cites);
          parent.appendChild(em);
          i = end + 1;
          continue;
        }
      } else if (c === '[') {
        var close = s.indexOf(']', i + 1);
        if (close > i + 1) {
          var inner = s.slice(i + 1, close);
          if (s.charAt(close + 1) === '(') {
            var paren = s.indexOf(')', close + 2);
            var href = paren > 0 ? safeUrl(s.slice(close + 2, paren)) : null;
            if (href && inner.indexOf('[') < 0) {
              flush();
              var a = link(href);
              inline(a, inner, false);
              parent.appendChild(a);
              i = paren + 1;
              continue;
            }
          } else {
            var nums = citeNumbers(inner, cites);
            if (nums) {
              flush();
              for (var k = 0; k < nums.length; k++) {
                parent.appendChild(citeChip(nums[k], cites));
              }
              i = close + 1;
              continue;
            }
          }
        }
      } else if ((c === 'h' || c === 'H') && cites !== false && (i === 0 || isSpace(s.charAt(i - 1)) || s.charAt(i - 1) === '(')) {
        // A bare http(s) URL.
        end = i;
        while (end < s.length && !isSpace(s.charAt(end)) && s.charAt(end) !== '<' && s.charAt(end) !== '>') {
          end++;
        }
        while (end > i && '.,;:!?)*'.indexOf(s.charAt(end - 1)) >= 0) {
          end--;
        }
        var bare = s.slice(i, end);
        var url = bare.indexOf('://') > 0 ? safeUrl(bare) : null;
        if (url) {
          flush();
          var la = link(url);
          la.textContent = bare;
          parent.appendChild(la);
          i = end;
          continue;
        }
      }
      buf += c;
      i++;
    }
    flush();
  }

  function renderMarkdown(text, cites) {
    var frag = document.createDocumentFragment();
    var lines = text.split('\r\n').join('\n').split('\n');
    var para = null;
    var list = null;
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      var t = line.trim();
      if (t.indexOf('```') === 0) {
        var code = [];
        i++;
        while (i < lines.length && lines[i].trim().indexOf('```') !== 0) {
          code.push(lines[i]);
          i++;
        }
        i++;
        var pre = el('pre', 'fd-pre');
        pre.appendChild(el('code', null, code.join('\n')));
        frag.appendChild(pre);
        para = null;
        list = null;
        continue;
      }
      i++;
      if (!t) {
        para = null;
        list = null;
        continue;
      }
      var item = listItem(line);
      if (item) {
        if (!list || list.ordered !== item.ordered) {
          list = { ordered: item.ordered, node: el(item.ordered ? 'ol' : 'ul', 'fd-list'), last: null };
          if (item.ordered && item.num !== 1) {
            list.node.setAttribute('start', String(item.num));
          }
          frag.appendChild(list.node);
        }
        list.last = el('li');
        inline(list.last, item.text, cites);
        list.node.appendChild(list.last);
        para = null;
        continue;
      }
      if (list && list.last && (line.charAt(0) === ' ' || line.charAt(0) === '\t')) {
        // An indented line continues the list item above it.
        list.last.appendChild(el('br'));
        inline(list.last, t, cites);
        continue;
      }
      list = null;
      var level = 0;
      while (level < t.length && t.charAt(level) === '#') {
        level++;
      }
      if (level > 0 && level <= 6 && t.charAt(level) === ' ') {
        // Headings become a bold line: chat bubbles have no room for big type.
        var h = el('p', 'fd-heading');
        var hs = el('strong');
        inline(hs, t.slice(level + 1), cites);
        h.appendChild(hs);
        frag.appendChild(h);
        para = null;
        continue;
      }
      if (para) {
        para.appendChild(el('br'));
      } else {
        para = el('p');
        frag.appendChild(para);
      }
      inline(para, line.trimEnd(), cites);
    }
    return frag;
  }

  // ---------------------------------------------------------------------------
  // Server-sent events over fetch: calls onEvent(name, data) per complete event,
  // however the stream is split into chunks. Resolves when the stream ends or
  // stop() returns true.

  function readEvents(res, onEvent) {
    var reader = res.body.getReader();
    var decoder = new TextDecoder();
    var buf = '';
    var stopped = false;
    var dispatch = function (block) {
      var name = 'message';
      var data = [];
      block.split('\n').forEach(function (line) {
        if (!line || line.charAt(0) === ':') {
          return;
        }
        var k = line.indexOf(':');
        var field = k < 0 ? line : line.slice(0, k);
        var value = k < 0 ? '' : line.slice(k + 1);
        if (value.charAt(0) === ' ') {
          value = value.slice(1);
        }
        if (field === 'event') {
          name = value;
        } else if (field === 'data') {
          data.push(value);
        }
      });
      if (data.length && !stopped) {
        var payload = null;
        try {
          payload = JSON.parse(data.join('\n'));
        } catch (e) {
          payload = null;
        }
        if (onEvent(name, payload || {}) === true) {
          stopped = true;
        }
      }
    };
    var drain = function () {
      buf = buf.split('\r\n').join('\n');
      var idx = buf.indexOf('\n\n');
      while (idx >= 0 && !stopped) {
        var block = buf.slice(0, idx);
        buf = buf.slice(idx + 2);
        dispatch(block);
        idx = buf.indexOf('\n\n');
      }
    };
    var pump = function () {
      return reader.read().then(function (r) {
        if (r.done) {
          buf += decoder.decode();
          drain();
          if (buf.trim() && !stopped) {
            dispatch(buf);
          }
          return;
        }
        buf += decoder.decode(r.value, { stream: true });
        drain();
        if (stopped) {
          reader.cancel().catch(function () {
            return null;
          });
          return;
        }
        return pump();
      });
    };
    return pump();
  }

  // The conversation is over for this browser: closed (410), erased or never
  // its own (404), or its token refused (401).
  function isGone(status) {
    return status === 401 || status === 404 || status === 410;
  }

  function errorText(res, fallback) {
    return res.json().then(function (j) {
      if (j && typeof j.message === 'string' && j.message) {
        return j.message;
      }
      throw new Error('no message');
    }).catch(function () {
      return fallback || 'Something went wrong (' + res.status + '). Please try again.';
    });
  }

  // ---------------------------------------------------------------------------
  // The widget.

  // The chat page reached through a former address: the server's redirect
  // named it, and the page (having checked it leads here) hands it over in
  // data-from. The visitor's conversation and id were kept under it, so they
  // are copied to the current address (never over what is there).
  function adoptFormerAddress(org, agent, pageEl) {
    try {
      var url = new URL(window.location.href);
      if (url.searchParams.has('fd_from')) {
        url.searchParams.delete('fd_from');
        window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
      }
    } catch (e) {
      // The address bar keeps the parameter; nothing depends on it.
    }
    var from = pageEl.getAttribute('data-from');
    var slash = from ? from.indexOf('/') : -1;
    if (slash < 1) {
      return;
    }
    var pairs = [
      ['frontdesk:conv:' + from, 'frontdesk:conv:' + org + '/' + agent],
      [VISITOR_KEY + from.slice(0, slash), VISITOR_KEY + org],
    ];
    pairs.forEach(function (pair) {
      var kept = storeGet('localStorage', pair[0]);
      if (kept !== null && storeGet('localStorage', pair[1]) === null) {
        storeSet('localStorage', pair[1], kept);
      }
    });
  }

  function mount(org, agent, pageMode, pageEl) {
    var channel = pageMode ? 'page' : 'widget';
    if (pageMode) {
      adoptFormerAddress(org, agent, pageEl);
    }
    var convKey = 'frontdesk:conv:' + org + '/' + agent;
    var openKey = 'frontdesk:open:' + org + '/' + agent;
    var visitorKey = VISITOR_KEY + org;
    var apiBase = BASE + '/api/v1/chat/' + encodeURIComponent(org) + '/' + encodeURIComponent(agent) + '/conversations';

    var state = 'idle'; // idle | loading | ready | unavailable | failed
    var conv = null;
    var loading = null;
    var streaming = false;
    var escalated = false;
    var handoffBusy = false;
    var interacted = false; // focus is only moved after the visitor used the panel
    var failLine = null;

    // Host and shadow root. The panel stays hidden until the stylesheet loaded.
    var host = el('div');
    host.id = 'frontdesk-widget';
    host.setAttribute('data-mode', channel);
    var root = host.attachShadow({ mode: 'open' });
    var sheet = el('link');
    sheet.rel = 'stylesheet';
    sheet.href = BASE + '/widget.css';
    var wrap = el('div', 'fd-root ' + (pageMode ? 'fd-page' : 'fd-widget'));
    wrap.hidden = true;
    var reveal = function () {
      wrap.hidden = false;
      // Hidden, the list could not be scrolled: the newest message was not in view.
      scrollDown();
    };
    sheet.addEventListener('load', reveal);
    sheet.addEventListener('error', reveal);
    setTimeout(reveal, 4000);
    root.appendChild(sheet);
    root.appendChild(wrap);

    // Panel.
    var panel = el('div', 'fd-panel');
    panel.id = 'fd-panel';
    attrs(panel, { role: pageMode ? 'region' : 'dialog', 'aria-labelledby': 'fd-title' });
    if (!pageMode) {
      panel.setAttribute('aria-modal', 'false');
      panel.hidden = true;
    }

    var header = el('div', 'fd-header');
    var avatar = el('div', 'fd-avatar');
    avatar.setAttribute('aria-hidden', 'true');
    avatar.appendChild(icon(ICON_CHAT));
    var heading = el('div', 'fd-heading');
    var title = el('h2', 'fd-title', 'Chat');
    title.id = 'fd-title';
    var status = el('p', 'fd-status', '');
    heading.appendChild(title);
    heading.appendChild(status);
    header.appendChild(avatar);
    header.appendChild(heading);
    var closeBtn = null;
    if (!pageMode) {
      closeBtn = button('fd-close', '', ICON_CLOSE);
      closeBtn.setAttribute('aria-label', 'Close chat');
      header.appendChild(closeBtn);
    }

    var list = el('div', 'fd-messages');
    attrs(list, { role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation', tabindex: '0' });

    var form = el('form', 'fd-composer');
    var input = el('textarea', 'fd-input');
    attrs(input, {
      rows: '1',
      maxlength: String(MAX_CHARS),
      placeholder: 'Write a message\u2026',
      'aria-label': 'Message',
      enterkeyhint: 'send',
    });
    var sendBtn = button('fd-send', '', ICON_SEND);
    sendBtn.type = 'submit';
    sendBtn.setAttribute('aria-label', 'Send message');
    form.appendChild(input);
    form.appendChild(sendBtn);

    var footer = el('div', 'fd-footer');
    var handoffBtn = handoffButton(false);
    var count = el('span', 'fd-count', '0 / ' + MAX_CHARS);
    count.setAttribute('aria-hidden', 'true');
    footer.appendChild(handoffBtn);
    footer.appendChild(count);

    panel.appendChild(header);
    panel.appendChild(list);
    panel.appendChild(form);
    panel.appendChild(footer);

    var bubble = null;
    if (!pageMode) {
      bubble = el('button', 'fd-bubble');
      bubble.type = 'button';
      attrs(bubble, { 'aria-label': 'Chat with us', 'aria-expanded': 'false', 'aria-controls': 'fd-panel' });
      bubble.appendChild(icon(ICON_CHAT, 'fd-i-chat'));
      bubble.appendChild(icon(ICON_CLOSE, 'fd-i-close'));
      wrap.appendChild(panel);
      wrap.appendChild(bubble);
      document.body.appendChild(host);
    } else {
      wrap.appendChild(panel);
      pageEl.textContent = '';
      pageEl.appendChild(host);
    }

    // -- rendering ------------------------------------------------------------

    function nearBottom() {
      return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    }

    function scrollDown() {
      list.scrollTop = list.scrollHeight;
    }

    function append(node, force) {
      var stick = force || nearBottom();
      list.appendChild(node);
      if (stick) {
        scrollDown();
      }
      return node;
    }

    function setStatus(text) {
      status.textContent = text;
    }

    function setAgentName(name) {
      var n = name ? String(name) : 'Chat';
      title.textContent = n;
      if (name) {
        avatar.textContent = n.trim().charAt(0).toUpperCase();
      }
    }

    function showError(text, retry) {
      var line = el('div', 'fd-error');
      line.appendChild(el('span', null, text));
      if (retry) {
        var again = button('fd-retry', 'Try again');
        again.addEventListener('click', function () {
          line.remove();
          retry();
        });
        line.appendChild(again);
      }
      append(line, true);
      return line;
    }

    function addVisitor(text) {
      return append(el('div', 'fd-message fd-visitor', text), true);
    }

    // A reply written by a person from the team, labelled: Markdown, as the
    // agent's replies are (built as elements), with no source chips.
    function addStaff(text) {
      var m = el('div', 'fd-message fd-staff');
      m.appendChild(el('span', 'fd-who', 'Team'));
      var body = el('div', 'fd-body fd-staff-text');
      body.appendChild(renderMarkdown(text, []));
      m.appendChild(body);
      return append(m, false);
    }

    function typing() {
      var t = el('span', 'fd-typing');
      t.appendChild(el('span', 'fd-sr', 'Typing\u2026'));
      for (var i = 0; i < 3; i++) {
        t.appendChild(el('i'));
      }
      return t;
    }

    function renderAgent(m) {
      m.body.textContent = '';
      m.body.appendChild(renderMarkdown(m.text, m.cites));
    }

    function finishAgent(m, cites) {
      m.cites = Array.isArray(cites) ? cites : [];
      renderAgent(m);
      var old = m.node.querySelector('.fd-sources');
      if (old) {
        old.remove();
      }
      if (m.cites.length) {
        var box = el('div', 'fd-sources');
        box.appendChild(el('div', 'fd-sources-label', 'Sources'));
        var ul = el('ul', 'fd-citations');
        m.cites.forEach(function (c, idx) {
          var n = c && c.n !== undefined && c.n !== null ? Number(c.n) : idx + 1;
          var li = el('li', 'fd-citation', citationText(c, n));
          li.setAttribute('data-n', String(n));
          li.tabIndex = -1;
          ul.appendChild(li);
        });
        box.appendChild(ul);
        m.node.appendChild(box);
      }
      m.node.setAttribute('data-done', 'true');
    }

    function addAgent(text, cites, done) {
      var node = el('div', 'fd-message fd-agent');
      var body = el('div', 'fd-body');
      node.appendChild(body);
      node.setAttribute('data-deltas', '0');
      var m = { node: node, body: body, text: text || '', cites: undefined, deltas: 0 };
      if (done) {
        finishAgent(m, cites);
      } else {
        body.appendChild(typing());
      }
      append(node, true);
      return m;
    }

    function handoffButton(inlineOffer) {
      var b = inlineOffer
        ? button('fd-handoff fd-handoff-inline', TXT_HANDOFF_YES, ICON_PERSON)
        : button('fd-handoff', TXT_HANDOFF, ICON_PERSON);
      b.addEventListener('click', escalate);
      b.disabled = escalated || state === 'unavailable';
      return b;
    }

    // The answer itself asks whether the visitor wants a person: the button
    // under it is the way to say yes.
    function offerHandoff() {
      var box = el('div', 'fd-offer');
      box.appendChild(handoffButton(true));
      append(box, false);
    }

    function updateControls() {
      var blocked = state === 'unavailable' || streaming || closedSince > 0;
      input.disabled = blocked;
      input.placeholder = closedSince ? 'This conversation is closed' : 'Write a message\u2026';
      sendBtn.disabled = blocked || !input.value.trim();
      var footerLabel = handoffBtn && handoffBtn.querySelector('.fd-label');
      if (footerLabel) {
        footerLabel.textContent = escalated ? TXT_HANDOFF_DONE : TXT_HANDOFF;
      }
      var buttons = root.querySelectorAll('.fd-handoff');
      for (var i = 0; i < buttons.length; i++) {
        buttons[i].disabled = escalated || handoffBusy || state === 'unavailable' || closedSince > 0;
      }
    }

    function isOpen() {
      return pageMode || !panel.hidden;
    }

    // Puts focus back into the input when it was lost to a now-disabled control.
    function refocus() {
      var active = document.activeElement;
      var inside = root.activeElement;
      if (!interacted || !isOpen() || input.disabled) {
        return;
      }
      if (!active || active === document.body || (active === host && (!inside || inside.disabled))) {
        input.focus({ preventScroll: true });
      }
    }

    function autosize() {
      var rows = 1;
      input.rows = rows;
      while (rows < 6 && input.scrollHeight > input.clientHeight + 1) {
        rows++;
        input.rows = rows;
      }
    }

    function onInput() {
      var len = input.value.length;
      count.textContent = len + ' / ' + MAX_CHARS;
      count.classList.toggle('fd-count-warn', len > MAX_CHARS - 200);
      autosize();
      updateControls();
    }

    // -- conversation ---------------------------------------------------------

    // Kept in the browser (every tab of the site, and after it is closed) for
    // a day after the visitor last wrote, so the team's answer finds them.
    function saveConv() {
      var kept = null;
      if (conv) {
        kept = JSON.stringify({
          id: conv.id,
          token: conv.token,
          agentName: conv.agentName,
          greeting: conv.greeting,
          savedAt: Date.now(),
        });
      }
      storeSet('localStorage', convKey, kept);
    }

    function forget() {
      conv = null;
      saveConv();
      state = 'idle';
      // The next conversation starts with no person asked for yet.
      escalated = false;
      closedSince = 0;
      closedLine = null;
      staffShown = 0;
      stopPolling();
      updateControls();
    }

    // -- the team's replies -----------------------------------------------------
    // Once a person was asked for, the transcript is read every few seconds
    // (while the page is visible) and the team's new replies are shown.

    var POLL_MS = 5000;
    var POLL_MAX_MS = 60000;
    var CLOSED_POLL_MS = 15000;
    var CLOSED_FOLLOW_MS = 30 * 60 * 1000;
    // When the team closed the conversation (0: it is not closed).
    var closedSince = 0;
    var closedLine = null;
    var pollDelay = POLL_MS;
    var staffShown = 0;
    var pollTimer = null;

    function stopPolling() {
      if (pollTimer) {
        clearTimeout(pollTimer);
        pollTimer = null;
      }
    }

    function showStaff(msgs) {
      var staff = msgs.filter(function (m) {
        return m && m.role === 'staff';
      });
      for (var i = staffShown; i < staff.length; i++) {
        addStaff(String(staff[i].content || ''));
      }
      staffShown = Math.max(staffShown, staff.length);
    }

    function poll() {
      pollTimer = null;
      if (!conv || !escalated) {
        return;
      }
      if (document.visibilityState === 'hidden') {
        pollTimer = setTimeout(poll, POLL_MS);
        return;
      }
      var current = conv;
      fetch(apiBase + '/' + encodeURIComponent(current.id) + '/messages', {
        headers: { Accept: 'application/json', 'X-Conversation-Token': current.token },
      }).then(function (res) {
        if (isGone(res.status)) {
          return { gone: true, messages: [] };
        }
        if (!res.ok) {
          throw new Error('poll ' + res.status);
        }
        return res.json();
      }).then(function (data) {
        if (conv !== current || !data || !Array.isArray(data.messages)) {
          return;
        }
        pollDelay = POLL_MS;
        showStaff(data.messages);
        if (data.gone || data.status === 'resolved') {
          showClosed();
          // Closed, it is still followed a while: a reply from the team opens
          // it again. Erased, there is nothing more to follow.
          if (!data.gone && Date.now() - closedSince <= CLOSED_FOLLOW_MS) {
            pollTimer = setTimeout(poll, CLOSED_POLL_MS);
          }
          return;
        }
        if (closedSince) {
          showReopened();
        }
        pollTimer = setTimeout(poll, pollDelay);
      }).catch(function () {
        // The server or the network failed for a moment: keep asking, less
        // often, rather than stop following the team's replies.
        if (conv === current) {
          pollDelay = Math.min(pollDelay * 2, POLL_MAX_MS);
          pollTimer = setTimeout(poll, pollDelay);
        }
      });
    }

    // The team closed the conversation: it stays on screen to read, the
    // message box rests, and a button starts a new one.
    function showClosed() {
      if (closedSince) {
        return;
      }
      closedSince = Date.now();
      closedLine = el('div', 'fd-closed');
      closedLine.appendChild(el('div', 'fd-note fd-note-closed', TXT_CLOSED));
      var again = button('fd-start', TXT_START_NEW);
      again.addEventListener('click', startNew);
      closedLine.appendChild(again);
      append(closedLine, true);
      setStatus('Conversation closed');
      var inInput = root.activeElement === input;
      updateControls();
      if (inInput) {
        again.focus({ preventScroll: true }); // the message box it was in rests
      }
    }

    // The team wrote again, which opens it once more.
    function showReopened() {
      closedSince = 0;
      var again = closedLine && closedLine.querySelector('.fd-start');
      if (again) {
        again.remove();
      }
      closedLine = null;
      append(el('div', 'fd-note', TXT_REOPENED), true);
      setStatus('Our team has been notified');
      updateControls();
    }

    function startNew() {
      forget();
      list.textContent = '';
      ensure();
    }

    function startPolling() {
      if (!pollTimer) {
        pollTimer = setTimeout(poll, POLL_MS);
      }
    }

    function becomeReady() {
      state = 'ready';
      if (bubble) {
        bubble.removeAttribute('data-state');
      }
      setStatus(escalated ? 'Our team has been notified' : TXT_READY);
      updateControls();
      refocus();
    }

    function becomeUnavailable() {
      state = 'unavailable';
      if (bubble) {
        bubble.setAttribute('data-state', 'unavailable');
      }
      setStatus('Unavailable');
      showError(TXT_UNAVAILABLE).classList.add('fd-unavailable');
      updateControls();
      if (closeBtn && isOpen()) {
        closeBtn.focus({ preventScroll: true });
      }
    }

    function becomeFailed(text) {
      state = 'failed';
      if (bubble) {
        bubble.setAttribute('data-state', 'unavailable');
      }
      setStatus('Unavailable');
      failLine = showError(text, ensure);
      updateControls();
    }

    // `noted`: the transcript already shows the note where it belongs.
    function markEscalated(noted) {
      if (escalated) {
        return;
      }
      escalated = true;
      if (!noted) {
        append(el('div', 'fd-note', TXT_NOTE), true);
      }
      setStatus('Our team has been notified');
      updateControls();
      startPolling();
    }

    function redraw(data) {
      list.textContent = '';
      setAgentName(conv.agentName);
      var msgs = data.messages;
      var first = msgs[0];
      if (conv.greeting && !(first && first.role === 'agent' && first.content === conv.greeting)) {
        addAgent(conv.greeting, [], true);
      }
      staffShown = 0;
      // Where the visitor asked for a person. The transcript has no times: the
      // note goes before the team's first reply, after the agent's answers
      // before it (the agent answers until the team has replied), or last.
      var firstStaff = -1;
      var noteAt = 0;
      for (var i = 0; i < msgs.length && firstStaff < 0; i++) {
        if (msgs[i] && msgs[i].role === 'staff') {
          firstStaff = i;
        } else if (msgs[i] && msgs[i].role !== 'visitor') {
          noteAt = i + 1;
        }
      }
      var asked = data.status === 'escalated' || firstStaff >= 0;
      var note = function () {
        list.appendChild(el('div', 'fd-note', TXT_NOTE));
      };
      msgs.forEach(function (m, idx) {
        if (asked && idx === noteAt) {
          note();
        }
        if (!m) {
          return;
        }
        if (m.role === 'visitor') {
          addVisitor(String(m.content || ''));
        } else if (m.role === 'staff') {
          addStaff(String(m.content || ''));
          staffShown += 1;
        } else {
          addAgent(String(m.content || ''), m.citations, true);
        }
      });
      if (asked && noteAt >= msgs.length) {
        note();
      }
      // Closed after the team answered, it is still followed: their next
      // reply opens it again.
      if (data.status === 'escalated' || (data.status === 'resolved' && firstStaff >= 0)) {
        markEscalated(true);
      }
      scrollDown();
    }

    // 'resumed' (closed by the team, it is shown to read, with a way to start
    // anew); 'gone' (erased, or not this browser's: start anew);
    // or 'failed' (the server or network failed: keep it, try again later).
    function resume(saved) {
      return fetch(apiBase + '/' + encodeURIComponent(saved.id) + '/messages', {
        headers: { Accept: 'application/json', 'X-Conversation-Token': saved.token },
      }).then(function (res) {
        if (isGone(res.status)) {
          return 'gone';
        }
        if (!res.ok) {
          return 'failed';
        }
        return res.json().then(function (data) {
          if (!data || !Array.isArray(data.messages)) {
            return 'gone';
          }
          conv = saved;
          redraw(data);
          becomeReady();
          if (data.status === 'resolved') {
            showClosed();
          }
          return 'resumed';
        });
      }).catch(function () {
        return 'failed';
      });
    }

    function create() {
      var body = { channel: channel };
      var visitor = storeGet('localStorage', visitorKey);
      if (visitor) {
        body.visitorId = visitor;
      }
      return fetch(apiBase, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
      }).then(function (res) {
        if (res.status === 403) {
          becomeUnavailable();
          return null;
        }
        if (!res.ok) {
          return errorText(res).then(becomeFailed);
        }
        return res.json().then(function (data) {
          if (!data || data.conversationId === undefined || data.conversationId === null || !data.token) {
            becomeFailed('The chat could not be started. Please try again.');
            return null;
          }
          if (data.visitorId) {
            storeSet('localStorage', visitorKey, String(data.visitorId));
          }
          conv = {
            id: data.conversationId,
            token: String(data.token),
            agentName: data.agentName ? String(data.agentName) : '',
            greeting: data.greeting ? String(data.greeting) : '',
          };
          saveConv();
          setAgentName(conv.agentName);
          if (conv.greeting) {
            addAgent(conv.greeting, [], true);
          }
          becomeReady();
          return null;
        });
      }, function () {
        // The browser refused the answer (this site is not allowed: CORS), or
        // there is no network. A request whose answer need not be read tells
        // the two apart: it goes through only when the server can be reached.
        return fetch(BASE + '/live', { mode: 'no-cors', cache: 'no-store' }).then(function () {
          becomeUnavailable();
          return null;
        }, function () {
          becomeFailed(TXT_UNREACHABLE);
          return null;
        });
      });
    }

    function load() {
      if (failLine) {
        failLine.remove();
        failLine = null;
      }
      state = 'loading';
      setStatus('Connecting\u2026');
      updateControls();
      var saved = null;
      try {
        saved = JSON.parse(storeGet('localStorage', convKey) || 'null');
      } catch (e) {
        saved = null;
      }
      if (saved && !(Date.now() - Number(saved.savedAt || 0) < CONV_KEPT_MS)) {
        saved = null;
      }
      if (saved && saved.id !== undefined && saved.token) {
        return resume(saved).then(function (outcome) {
          if (outcome === 'resumed') {
            return null;
          }
          if (outcome === 'failed') {
            // Kept: once the server answers again, the conversation goes on.
            becomeFailed(TXT_UNREACHABLE);
            return null;
          }
          storeSet('localStorage', convKey, null);
          return create();
        });
      }
      return create();
    }

    function ensure() {
      if (state === 'ready' || state === 'unavailable') {
        return Promise.resolve();
      }
      if (!loading) {
        loading = load().catch(function () {
          becomeFailed('The chat could not be started. Please try again.');
        }).then(function () {
          loading = null;
        });
      }
      return loading;
    }

    // -- sending --------------------------------------------------------------

    function endStream(m, errorMsg, visitorNode, restore) {
      streaming = false;
      list.removeAttribute('aria-busy');
      if (m) {
        if (!m.text) {
          m.node.remove();
        } else if (!m.node.hasAttribute('data-done')) {
          m.node.setAttribute('data-error', 'true');
          finishAgent(m, m.cites);
        }
      }
      if (errorMsg) {
        showError(errorMsg);
      }
      if (restore) {
        if (visitorNode) {
          visitorNode.classList.add('fd-failed');
        }
        if (!input.value) {
          input.value = restore;
        }
      }
      onInput();
      refocus();
    }

    function stream(res, m, visitorNode) {
      var finished = false;
      var onEvent = function (name, data) {
        if (name === 'delta') {
          var piece = typeof data.text === 'string' ? data.text : '';
          m.deltas++;
          m.node.setAttribute('data-deltas', String(m.deltas));
          if (piece) {
            var stick = nearBottom();
            m.text += piece;
            renderAgent(m);
            if (stick) {
              scrollDown();
            }
          }
          return false;
        }
        if (name === 'done') {
          finished = true;
          // A reply that came whole (the team took over) has no deltas.
          if (!m.text && typeof data.content === 'string') {
            m.text = data.content;
          }
          var atEnd = nearBottom();
          finishAgent(m, data.citations); // its sources come under it
          if (atEnd) {
            scrollDown();
          }
          if (data.provider === 'team') {
            // A person has this conversation: their replies come by polling.
            markEscalated();
          } else if (data.handoffOffered === true && !escalated) {
            offerHandoff();
          }
          endStream(m, null);
          return true;
        }
        if (name === 'error') {
          finished = true;
          if (data.code === 'GONE') {
            forget(); // closed while it answered: the next message starts anew
          }
          endStream(m, data.message ? String(data.message) : 'Something went wrong. Please try again.');
          return true;
        }
        return false;
      };
      return readEvents(res, onEvent).catch(function () {
        return null;
      }).then(function () {
        if (!finished) {
          endStream(m, 'The reply was interrupted. Please try again.');
        }
      });
    }

    function send() {
      var text = input.value.trim();
      if (!text || streaming || state === 'unavailable' || closedSince) {
        return;
      }
      streaming = true; // blocks double sends while a conversation starts
      updateControls();
      ensure().then(function () {
        if (state !== 'ready') {
          streaming = false;
          onInput();
          refocus();
          return null;
        }
        input.value = '';
        onInput();
        saveConv(); // kept a day from the visitor's latest message
        var visitorNode = addVisitor(text);
        var m = addAgent('', null, false);
        list.setAttribute('aria-busy', 'true');
        return fetch(apiBase + '/' + encodeURIComponent(conv.id) + '/messages', {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            Accept: 'text/event-stream',
            'X-Conversation-Token': conv.token,
          },
          body: JSON.stringify({ content: text }),
        }).then(function (res) {
          if (!res.ok) {
            return errorText(res).then(function (msg) {
              if (isGone(res.status)) {
                forget(); // the next message starts a new conversation
              }
              endStream(m, msg, visitorNode, text);
            });
          }
          return stream(res, m, visitorNode);
        }, function () {
          endStream(m, 'Your message could not be sent. Check your connection and try again.', visitorNode, text);
        });
      });
    }

    function escalate() {
      if (escalated || handoffBusy || state === 'unavailable' || closedSince) {
        return;
      }
      handoffBusy = true;
      updateControls();
      ensure().then(function () {
        if (state !== 'ready') {
          return null;
        }
        return fetch(apiBase + '/' + encodeURIComponent(conv.id) + '/escalate', {
          method: 'POST',
          headers: { Accept: 'application/json', 'X-Conversation-Token': conv.token },
        }).then(function (res) {
          if (res.ok) {
            markEscalated();
            return null;
          }
          return errorText(res).then(function (msg) {
            if (isGone(res.status)) {
              forget(); // asking again starts a new conversation
            }
            showError(msg);
          });
        }, function () {
          showError('The team could not be reached. Check your connection and try again.');
        });
      }).then(function () {
        handoffBusy = false;
        updateControls();
        refocus();
      });
    }

    // -- open / close ---------------------------------------------------------

    function open(focus) {
      panel.hidden = false;
      wrap.classList.add('fd-open');
      bubble.setAttribute('aria-expanded', 'true');
      storeSet('sessionStorage', openKey, '1');
      scrollDown();
      if (focus) {
        if (state === 'unavailable') {
          closeBtn.focus({ preventScroll: true });
        } else {
          input.focus({ preventScroll: true });
        }
      }
      autosize();
      ensure();
    }

    function close() {
      panel.hidden = true;
      wrap.classList.remove('fd-open');
      bubble.setAttribute('aria-expanded', 'false');
      storeSet('sessionStorage', openKey, null);
      bubble.focus({ preventScroll: true });
    }

    // -- events ---------------------------------------------------------------

    var touched = function () {
      interacted = true;
    };
    wrap.addEventListener('pointerdown', touched);
    wrap.addEventListener('keydown', touched);
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      send();
    });
    input.addEventListener('input', onInput);
    input.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        send();
      }
    });
    list.addEventListener('click', function (e) {
      var target = e.target;
      var chip = target && target.closest ? target.closest('.fd-cite-btn') : null;
      if (!chip) {
        return;
      }
      var msg = chip.closest('.fd-message');
      var item = msg ? msg.querySelector('.fd-citation[data-n="' + chip.getAttribute('data-n') + '"]') : null;
      if (item) {
        item.classList.add('fd-flash');
        item.scrollIntoView({ block: 'nearest' });
        item.focus({ preventScroll: true });
        setTimeout(function () {
          item.classList.remove('fd-flash');
        }, 1600);
      }
    });

    if (pageMode) {
      ensure();
    } else {
      bubble.addEventListener('click', function () {
        if (panel.hidden) {
          open(true);
        } else {
          close();
        }
      });
      closeBtn.addEventListener('click', close);
      wrap.addEventListener('keydown', function (e) {
        if (e.key === 'Escape' && !panel.hidden) {
          e.preventDefault();
          close();
        }
      });
      if (storeGet('sessionStorage', openKey) === '1') {
        open(false);
      }
    }
    onInput();
  }

  function start() {
    if (document.getElementById('frontdesk-widget')) {
      return; // already mounted (script included twice)
    }
    var pageEl = document.getElementById('frontdesk-chat');
    var pageMode = !!(pageEl && pageEl.getAttribute('data-mode') === 'page');
    var from = pageMode ? pageEl : script;
    var org = (from && from.getAttribute('data-org')) || (script && script.getAttribute('data-org'));
    var agent = (from && from.getAttribute('data-agent')) || (script && script.getAttribute('data-agent'));
    if (!org || !agent) {
      if (window.console) {
        console.warn('Frontdesk widget: data-org and data-agent are required.');
      }
      return;
    }
    mount(org, agent, pageMode, pageEl);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
