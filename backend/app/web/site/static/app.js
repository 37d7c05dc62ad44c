/* SynSpirit's web page: one HTML page, routed here by path (history API), no build step.
 *
 * Rules kept throughout (docs/api.md, "The web page"):
 * - whatever the server says is put in the page as text (textContent, createTextNode), never
 *   parsed as HTML; the one exception is an article's content_html, sanitized by the server;
 * - no inline script or handler attribute: the Content-Security-Policy forbids them;
 * - counts and new comments arrive through Socket.IO (socket.io.min.js, the global `io`), and
 *   after a reconnect the page asks the API again for what it may have missed.
 */
"use strict";

(function () {
  const SESSION_KEY = "synspirit.session";
  const main = document.getElementById("main");

  const state = {
    token: null,
    user: null,
    socket: null,
    subscriptions: new Set(), // "post:12": items whose events this page wants
    page: null, // what the current page needs from live events (see renderItem)
    generation: 0, // bumped on every navigation: late answers for a left page are dropped
  };

  // --- small helpers -----------------------------------------------------------------------------

  // el("a", {href: "/x", class: "c"}, "text", child...): attributes are set as attributes,
  // children given as strings become text nodes. Never HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // The API's excerpt is HTML-escaped (docs/api.md); shown as text it must be unescaped first.
  function unescapeHtml(text) {
    return String(text)
      .replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
      .replace(/&#x27;/g, "'").replace(/&#39;/g, "'").replace(/&amp;/g, "&");
  }

  function snippet(text, max) {
    const flat = String(text).replace(/\s+/g, " ").trim();
    return flat.length > max ? flat.slice(0, max - 1) + "…" : flat;
  }

  const relative = typeof Intl !== "undefined" && Intl.RelativeTimeFormat
    ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;

  function when(iso) {
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return "";
    const seconds = (t.getTime() - Date.now()) / 1000;
    if (relative && Math.abs(seconds) < 86400) {
      if (Math.abs(seconds) < 60) return relative.format(Math.round(seconds), "second");
      if (Math.abs(seconds) < 3600) return relative.format(Math.round(seconds / 60), "minute");
      return relative.format(Math.round(seconds / 3600), "hour");
    }
    return t.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  }

  function timeEl(iso) {
    return el("time", { datetime: iso, title: new Date(iso).toLocaleString() }, when(iso));
  }

  let toastTimer = null;
  function toast(message, kind) {
    const box = document.getElementById("toast");
    box.textContent = message;
    box.className = "toast" + (kind === "error" ? " toast-error" : "");
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  function plural(n, one, many) {
    return n === 1 ? one : many;
  }

  // --- the API -------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields || null;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.token) headers.Authorization = "Bearer " + state.token;
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "network", "Could not reach SynSpirit. Check the connection and try again.");
    }
    if (resp.status === 204) return null;
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401 && state.token && err.code === "unauthorized") {
        forgetSession();
        toast("Your session has ended: please sign in again.", "error");
      }
      throw new ApiError(resp.status, err.code || "error", err.message || resp.statusText || "error",
        err.fields);
    }
    return data;
  }

  // --- the session ---------------------------------------------------------------------------------

  function loadSession() {
    try {
      const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
      if (saved && typeof saved.token === "string" && saved.user) {
        state.token = saved.token;
        state.user = saved.user;
      }
    } catch (e) {
      localStorage.removeItem(SESSION_KEY);
    }
  }

  function saveSession(token, user) {
    state.token = token;
    state.user = user;
    localStorage.setItem(SESSION_KEY, JSON.stringify({ token, user }));
    showSession();
    reconnect();
  }

  function forgetSession() {
    state.token = null;
    state.user = null;
    localStorage.removeItem(SESSION_KEY);
    showSession();
    reconnect();
  }

  function showSession() {
    const signedIn = Boolean(state.user);
    const name = document.getElementById("nav-user");
    name.textContent = signedIn ? state.user.username : "";
    name.hidden = !signedIn;
    document.getElementById("nav-signout").hidden = !signedIn;
    document.getElementById("nav-signin").hidden = signedIn;
    document.getElementById("nav-signup").hidden = signedIn;
    document.getElementById("nav-write").hidden = !signedIn;
    document.body.classList.toggle("signed-in", signedIn);
  }

  async function signOut() {
    try {
      if (state.token) await api("POST", "/api/auth/logout");
    } catch (e) {
      // Signed out here whatever the server said: the token is dropped.
    }
    forgetSession();
    toast("Signed out.");
    navigate("/");
  }

  // What this user did here: the API does not say whether you liked an item, so the page
  // remembers what it did itself, per user (a like made elsewhere shows as not yet made: a
  // second like changes nothing, the server keeps one per user).
  function actedKey() {
    return "synspirit.acted." + (state.user ? state.user.id : "anonymous");
  }

  function acted() {
    try {
      return new Set(JSON.parse(localStorage.getItem(actedKey()) || "[]"));
    } catch (e) {
      return new Set();
    }
  }

  function setActed(key, on) {
    const set = acted();
    if (on) set.add(key); else set.delete(key);
    localStorage.setItem(actedKey(), JSON.stringify([...set].slice(-2000)));
  }

  // --- Socket.IO -------------------------------------------------------------------------------------

  function setLive(text, cls) {
    const live = document.getElementById("live");
    live.textContent = text;
    live.className = "live " + cls;
  }

  function connect() {
    if (typeof window.io !== "function") {
      setLive("offline", "live-off");
      return;
    }
    const socket = window.io({
      auth: state.token ? { token: state.token } : {},
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    state.socket = socket;
    setLive("connecting", "live-wait");
    socket.on("connect", () => {
      setLive("live", "live-on");
      for (const key of state.subscriptions) emitSubscribe(socket, key);
      // Events sent while not subscribed are lost: ask the API for what they would have said.
      if (state.page && state.page.repair) state.page.repair();
    });
    socket.on("disconnect", (reason) => {
      setLive("reconnecting", "live-wait");
      // The client reconnects by itself except after the server's own disconnect.
      if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
    });
    socket.io.on("reconnect_attempt", () => setLive("reconnecting", "live-wait"));
    socket.on("connect_error", (err) => {
      setLive("reconnecting", "live-wait");
      if (err && err.message === "invalid or expired token" && state.token) {
        forgetSession(); // reconnects anonymously
        toast("Your session has ended: please sign in again.", "error");
      }
    });
    socket.on("counts", onCounts);
    socket.on("comment", (data) => state.page && state.page.onComment && state.page.onComment(data));
    socket.on("rendered", (data) => state.page && state.page.onRendered && state.page.onRendered(data));
  }

  function reconnect() {
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.io.removeAllListeners();
      state.socket.disconnect();
      state.socket = null;
    }
    connect();
  }

  function emitSubscribe(socket, key) {
    const [type, id] = key.split(":");
    socket.emit("subscribe", { target_type: type, target_id: Number(id) });
  }

  function subscribe(type, id) {
    const key = type + ":" + id;
    if (state.subscriptions.has(key)) return;
    state.subscriptions.add(key);
    if (state.socket && state.socket.connected) emitSubscribe(state.socket, key);
  }

  function unsubscribeAll() {
    if (state.socket && state.socket.connected) {
      for (const key of state.subscriptions) {
        const [type, id] = key.split(":");
        state.socket.emit("unsubscribe", { target_type: type, target_id: Number(id) });
      }
    }
    state.subscriptions.clear();
  }

  // Every element showing a count carries data-count="TYPE:ID:NAME": one handler updates all.
  function onCounts(data) {
    if (!data || !data.counts) return;
    for (const [name, value] of Object.entries(data.counts)) {
      setCount(data.target_type, data.target_id, name, value);
    }
  }

  function setCount(type, id, name, value) {
    const selector = '[data-count="' + type + ":" + Number(id) + ":" + name + '"]';
    for (const node of document.querySelectorAll(selector)) {
      const text = String(Number(value));
      if (node.textContent !== text) {
        node.textContent = text;
        node.classList.remove("bump");
        void node.offsetWidth; // restart the animation
        node.classList.add("bump");
      }
      const word = node.nextElementSibling;
      if (word && word.dataset.one) word.textContent = plural(Number(value), word.dataset.one, word.dataset.many);
    }
  }

  function count(type, id, name, value) {
    return el("span", { class: "count", "data-count": type + ":" + id + ":" + name }, String(value));
  }

  // "1 like", "2 likes": the word follows the count when it changes (setCount).
  function counted(type, id, name, value, one, many) {
    return el("span", { class: "counted" }, count(type, id, name, value), " ",
      el("span", { "data-one": one, "data-many": many }, plural(value, one, many)));
  }

  // --- routing -------------------------------------------------------------------------------------------

  const ROUTES = [
    [/^\/$/, renderHome],
    [/^\/(post|article)s\/([1-9][0-9]{0,9})$/, renderItem],
    [/^\/signin$/, renderSignin],
    [/^\/signup$/, renderSignup],
    [/^\/write$/, renderWrite],
  ];

  function navigate(path, replace) {
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    route();
  }

  function route() {
    state.generation += 1;
    state.page = null;
    unsubscribeAll();
    clear(main);
    const path = location.pathname;
    for (const [pattern, render] of ROUTES) {
      const match = pattern.exec(path);
      if (match) {
        render(match, state.generation);
        return;
      }
    }
    renderNotFound();
  }

  function current(generation) {
    return generation === state.generation;
  }

  function heading(text) {
    const h1 = el("h1", { tabindex: "-1" }, text);
    return h1;
  }

  function focusHeading() {
    const h1 = main.querySelector("h1");
    if (h1 && document.activeElement && document.activeElement !== document.body
        && !main.contains(document.activeElement)) {
      h1.focus({ preventScroll: true });
    }
  }

  function renderNotFound(message) {
    clear(main);
    main.append(heading("Not found"),
      el("p", {}, message || "There is no page here. "),
      el("p", {}, el("a", { href: "/", "data-nav": true }, "Back to the front page")));
    document.title = "Not found · SynSpirit";
  }

  function renderError(error) {
    if (error.status === 404) {
      renderNotFound("It may have been deleted.");
      return;
    }
    clear(main);
    main.append(heading("Something went wrong"), el("p", { class: "error" }, error.message));
  }

  // --- the front page ----------------------------------------------------------------------------------

  function renderHome(match, generation) {
    const sort = new URLSearchParams(location.search).get("sort") === "hot" ? "hot" : "new";
    document.title = "SynSpirit";
    const tabs = el("div", { class: "tabs", role: "group", "aria-label": "Order" },
      el("a", { href: "/", "data-nav": true, class: "tab", "aria-current": sort === "new" ? "page" : null }, "Newest"),
      el("a", { href: "/?sort=hot", "data-nav": true, class: "tab", "aria-current": sort === "hot" ? "page" : null }, "Hot"));
    const intro = state.user ? null : el("p", { class: "intro" },
      "SynSpirit is a community of short posts and long articles. ",
      el("a", { href: "/signup", "data-nav": true }, "Sign up"), " to write, like and comment.");
    const columns = el("div", { class: "columns" },
      feedSection("post", "Posts", sort, generation),
      feedSection("article", "Articles", sort, generation));
    main.append(...[el("div", { class: "homehead" }, heading(sort === "hot" ? "Hot" : "Newest"), tabs),
      intro, columns].filter(Boolean));
    focusHeading();
  }

  function feedSection(kind, title, sort, generation) {
    const list = el("ol", { class: "feed", id: kind + "-feed", "aria-busy": "true" });
    const more = el("button", { type: "button", class: "more", hidden: true }, "More");
    const section = el("section", { class: "column", "aria-labelledby": kind + "-title" },
      el("h2", { id: kind + "-title" }, title), list, more);
    let cursor = null;
    async function load() {
      more.disabled = true;
      try {
        const query = "?per_page=20&sort=" + sort + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
        const page = await api("GET", "/api/" + kind + "s" + query);
        if (!current(generation)) return;
        for (const item of page.items) list.append(card(kind, item));
        if (!list.children.length) list.append(el("li", { class: "empty" }, "Nothing yet."));
        cursor = page.next_cursor;
        more.hidden = !cursor;
      } catch (error) {
        if (current(generation)) list.append(el("li", { class: "error" }, error.message));
      } finally {
        more.disabled = false;
        list.removeAttribute("aria-busy");
      }
    }
    more.addEventListener("click", load);
    load();
    return section;
  }

  function card(kind, item) {
    subscribe(kind, item.id);
    const text = kind === "article"
      ? (item.excerpt !== null && item.excerpt !== undefined ? unescapeHtml(item.excerpt) : snippet(item.content, 160))
      : snippet(item.content, 160);
    const c = item.counts;
    return el("li", { class: "card", "data-kind": kind, "data-id": item.id },
      el("a", { class: "card-title", href: "/" + kind + "s/" + item.id, "data-nav": true }, item.title),
      el("p", { class: "card-text" }, text),
      el("p", { class: "meta" },
        el("span", { class: "author" }, item.author.username), " · ", timeEl(item.created_at),
        " · ", counted(kind, item.id, "likes", c.likes, "like", "likes"),
        " · ", counted(kind, item.id, "comments", c.comments, "comment", "comments"),
        " · ", counted(kind, item.id, "views", c.views, "view", "views")));
  }

  // --- a post or an article ------------------------------------------------------------------------------

  async function renderItem(match, generation) {
    const kind = match[1];
    const id = Number(match[2]);
    main.append(el("p", { class: "loading" }, "Loading…"));
    let item;
    try {
      item = await api("GET", "/api/" + kind + "s/" + id);
    } catch (error) {
      if (current(generation)) renderError(error);
      return;
    }
    if (!current(generation)) return;
    clear(main);
    document.title = item.title + " · SynSpirit";
    subscribe(kind, id);

    const body = el("div", { class: "content " + (kind === "article" ? "markdown" : "plain"), id: "item-content" });
    function showBody(it) {
      clear(body);
      if (kind === "post") {
        body.textContent = it.content;
      } else if (it.content_html !== null && it.content_html !== undefined) {
        // The one place HTML from the server enters the page: sanitized by the server
        // (nh3, app/rendering.py), docs/api.md.
        body.innerHTML = it.content_html;
      } else {
        body.append(el("p", { class: "loading" }, "Rendering the Markdown…"));
      }
    }
    showBody(item);

    const c = item.counts;
    const own = state.user && state.user.id === item.author.id;
    const actions = el("div", { class: "actions", role: "group", "aria-label": "Actions" },
      toggleButton("like", kind, id, "Like", "Liked", c.likes, "likes"),
      toggleButton("collect", kind, id, "Collect", "Collected", c.collects, "collects"),
      shareButton(kind, id, c.shares),
      el("span", { class: "stat" }, counted(kind, id, "comments", c.comments, "comment", "comments")),
      el("span", { class: "stat" }, counted(kind, id, "views", c.views, "view", "views")),
      own ? deleteButton("Delete", async () => {
        await api("DELETE", "/api/" + kind + "s/" + id);
        toast(kind === "post" ? "Post deleted." : "Article deleted.");
        navigate("/");
      }) : null);

    const comments = el("ol", { class: "comments", id: "comments" });
    const moreComments = el("button", { type: "button", class: "more", hidden: true }, "More comments");
    const seen = new Set();
    let cursor = null;
    let complete = false;

    function addComment(comment) {
      if (seen.has(comment.id)) return;
      seen.add(comment.id);
      const empty = comments.querySelector(".empty");
      if (empty) empty.remove();
      comments.append(commentItem(kind, id, comment, () => {
        seen.delete(comment.id);
      }));
    }

    async function loadComments(all) {
      moreComments.disabled = true;
      try {
        do {
          const query = "?per_page=50" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
          const page = await api("GET", "/api/" + kind + "s/" + id + "/comments" + query);
          if (!current(generation)) return;
          for (const comment of page.items) addComment(comment);
          if (page.next_cursor) cursor = page.next_cursor;
          complete = !page.next_cursor;
        } while (all && !complete);
        moreComments.hidden = complete;
        if (!comments.children.length) comments.append(el("li", { class: "empty" }, "No comments yet."));
      } catch (error) {
        if (current(generation)) toast(error.message, "error");
      } finally {
        moreComments.disabled = false;
      }
    }
    moreComments.addEventListener("click", () => loadComments(false));

    const form = commentForm(kind, id, addComment);
    const meta = el("p", { class: "meta" },
      el("span", { class: "author" }, item.author.username), " · ", timeEl(item.created_at),
      kind === "article" && item.reading_minutes ? " · " + item.reading_minutes + " min read" : null);
    main.append(
      el("article", { class: "item", "data-kind": kind, "data-id": id },
        heading(item.title), meta, body, actions),
      el("section", { class: "discussion", "aria-labelledby": "comments-title" },
        el("h2", { id: "comments-title" }, "Comments"), comments, moreComments, form));
    focusHeading();
    await loadComments(false);

    state.page = {
      onComment(data) {
        if (data.target_type !== kind || data.target_id !== id || !data.comment) return;
        // Oldest first: a new comment is the last one; shown at once only when every
        // earlier page is here (otherwise "More comments" brings it in order).
        if (complete) addComment(data.comment);
      },
      onRendered(data) {
        if (data.target_type !== kind || data.target_id !== id) return;
        api("GET", "/api/" + kind + "s/" + id).then((fresh) => {
          if (current(generation)) showBody(fresh);
        }).catch(() => {});
      },
      // After a reconnect: events sent meanwhile are lost; ask for the counts and the comments.
      repair() {
        api("GET", "/api/" + kind + "s/" + id).then((fresh) => {
          if (!current(generation)) return;
          onCounts({ target_type: kind, target_id: id, counts: fresh.counts });
          if (kind === "article" && fresh.content_html && !item.content_html) showBody(fresh);
        }).catch(() => {});
        if (complete) loadComments(true);
      },
    };
    if (state.socket && state.socket.connected) {
      // Events sent between the first read and the subscription: read once more.
      state.page.repair();
    }
  }

  function toggleButton(action, type, id, label, activeLabel, value, countName) {
    const key = action + ":" + type + ":" + id;
    let active = acted().has(key);
    const text = el("span", {}, active ? activeLabel : label);
    const button = el("button", {
      type: "button", class: "act act-" + action, "aria-pressed": String(active), id: action + "-button",
    }, text, " ", count(type, id, countName, value));
    button.addEventListener("click", async () => {
      if (!state.user) {
        toast("Sign in to " + label.toLowerCase() + ".", "error");
        return;
      }
      button.disabled = true;
      try {
        const result = await api(active ? "DELETE" : "POST", "/api/actions",
          { action, target_type: type, target_id: id });
        active = result.active;
        setActed(key, active);
        button.setAttribute("aria-pressed", String(active));
        text.textContent = active ? activeLabel : label;
      } catch (error) {
        toast(error.message, "error");
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function shareButton(type, id, value) {
    const key = "share:" + type + ":" + id;
    const done = acted().has(key);
    const button = el("button", { type: "button", class: "act act-share", id: "share-button", "aria-pressed": String(done) },
      el("span", {}, "Share"), " ", count(type, id, "shares", value));
    button.addEventListener("click", async () => {
      if (!state.user) {
        toast("Sign in to share.", "error");
        return;
      }
      const link = location.origin + "/" + type + "s/" + id;
      button.disabled = true;
      try {
        await api("POST", "/api/actions", { action: "share", target_type: type, target_id: id });
        setActed(key, true);
        button.setAttribute("aria-pressed", "true");
        let copied = false;
        try {
          if (navigator.clipboard) {
            await navigator.clipboard.writeText(link);
            copied = true;
          }
        } catch (e) {
          copied = false;
        }
        toast(copied ? "Link copied: " + link : "Shared. The link: " + link);
      } catch (error) {
        toast(error.message, "error");
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  // Two clicks: the first asks, the second (within 5 s) deletes. No dialog.
  function deleteButton(label, action) {
    const button = el("button", { type: "button", class: "danger" }, label);
    let armed = null;
    button.addEventListener("click", async () => {
      if (!armed) {
        button.textContent = "Really delete?";
        armed = setTimeout(() => { armed = null; button.textContent = label; }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      button.disabled = true;
      try {
        await action();
      } catch (error) {
        toast(error.message, "error");
        button.textContent = label;
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function commentItem(kind, itemId, comment, onDeleted) {
    const type = kind + "_comment";
    const own = state.user && state.user.id === comment.author.id;
    const li = el("li", { class: "comment", "data-id": comment.id },
      el("p", { class: "meta" }, el("span", { class: "author" }, comment.author.username), " · ",
        timeEl(comment.created_at)),
      el("p", { class: "comment-text" }, comment.content));
    const bar = el("div", { class: "comment-actions" },
      toggleButton("like", type, comment.id, "Like", "Liked", comment.counts.likes, "likes"));
    bar.firstChild.removeAttribute("id");
    if (own) {
      bar.append(deleteButton("Delete", async () => {
        await api("DELETE", "/api/" + kind + "s/" + itemId + "/comments/" + comment.id);
        li.remove();
        onDeleted();
        toast("Comment deleted.");
      }));
    }
    li.append(bar);
    return li;
  }

  function commentForm(kind, id, addComment) {
    if (!state.user) {
      return el("p", { class: "hint" }, el("a", { href: "/signin", "data-nav": true }, "Sign in"),
        " to comment.");
    }
    const area = el("textarea", { id: "comment-input", name: "content", rows: "3", maxlength: "5000", required: true });
    const error = el("p", { class: "error", role: "alert" });
    const button = el("button", { type: "submit", id: "comment-submit" }, "Comment");
    const form = el("form", { class: "comment-form", id: "comment-form" },
      el("label", { for: "comment-input" }, "Your comment"), area, error, button);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      button.disabled = true;
      try {
        const comment = await api("POST", "/api/" + kind + "s/" + id + "/comments", { content: area.value });
        addComment(comment);
        area.value = "";
      } catch (e) {
        error.textContent = fieldMessage(e, "content");
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  function fieldMessage(error, field) {
    if (error.fields && error.fields[field]) return error.message + ": " + error.fields[field];
    return error.message;
  }

  // --- forms: sign in, sign up, write --------------------------------------------------------------------

  function field(label, attrs, hint) {
    const input = el(attrs.tag || "input", Object.assign({}, attrs, { tag: null }));
    const error = el("p", { class: "field-error", id: attrs.id + "-error", "aria-live": "polite" });
    input.setAttribute("aria-describedby", attrs.id + "-error" + (hint ? " " + attrs.id + "-hint" : ""));
    return {
      input, error,
      node: el("div", { class: "field" }, el("label", { for: attrs.id }, label), input,
        hint ? el("p", { class: "hint", id: attrs.id + "-hint" }, hint) : null, error),
    };
  }

  function showErrors(error, fields, general) {
    for (const [name, f] of Object.entries(fields)) {
      f.error.textContent = error.fields && error.fields[name] ? error.fields[name] : "";
    }
    const named = error.fields && Object.keys(error.fields).some((name) => name in fields);
    general.textContent = named ? "Please correct the fields above." : error.message;
  }

  function authForm(mode, generation) {
    const signup = mode === "signup";
    document.title = (signup ? "Sign up" : "Sign in") + " · SynSpirit";
    const fields = {
      username: field("Username", { id: "username", name: "username", autocomplete: "username", required: true, maxlength: signup ? "32" : "128" },
        signup ? "3 to 32 letters, digits or _" : null),
      password: field("Password", { id: "password", name: "password", type: "password", required: true, maxlength: "128",
        autocomplete: signup ? "new-password" : "current-password" }, signup ? "At least 8 characters" : null),
    };
    const general = el("p", { class: "error", role: "alert", id: "form-error" });
    const submit = el("button", { type: "submit", id: "auth-submit" }, signup ? "Sign up" : "Sign in");
    const form = el("form", { class: "form", id: mode + "-form", novalidate: true },
      fields.username.node, fields.password.node, general, submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      general.textContent = "";
      try {
        const result = await api("POST", signup ? "/api/auth/register" : "/api/auth/login",
          { username: fields.username.input.value, password: fields.password.input.value });
        saveSession(result.token, result.user);
        toast(signup ? "Welcome, " + result.user.username + "!" : "Signed in as " + result.user.username + ".");
        const next = new URLSearchParams(location.search).get("next");
        navigate(next && /^\/[a-z0-9/]*$/.test(next) ? next : "/");
      } catch (error) {
        if (current(generation)) showErrors(error, fields, general);
      } finally {
        submit.disabled = false;
      }
    });
    main.append(el("div", { class: "narrow" }, heading(signup ? "Sign up" : "Sign in"), form,
      el("p", { class: "hint" }, signup ? "Already have an account? " : "New here? ",
        el("a", { href: signup ? "/signin" : "/signup", "data-nav": true }, signup ? "Sign in" : "Sign up"))));
    fields.username.input.focus();
  }

  function renderSignin(match, generation) {
    authForm("signin", generation);
  }

  function renderSignup(match, generation) {
    authForm("signup", generation);
  }

  function renderWrite(match, generation) {
    document.title = "Write · SynSpirit";
    if (!state.user) {
      main.append(heading("Write"), el("p", {}, el("a", { href: "/signin?next=/write", "data-nav": true }, "Sign in"),
        " to write a post or an article."));
      return;
    }
    const kindPost = el("input", { type: "radio", name: "kind", value: "post", id: "kind-post", checked: true });
    const kindArticle = el("input", { type: "radio", name: "kind", value: "article", id: "kind-article" });
    const kinds = el("fieldset", { class: "kinds" }, el("legend", {}, "What"),
      el("label", { for: "kind-post" }, kindPost, " Post (short, plain text)"),
      el("label", { for: "kind-article" }, kindArticle, " Article (Markdown)"));
    const fields = {
      title: field("Title", { id: "title", name: "title", required: true, maxlength: "200" }),
      content: field("Content", { tag: "textarea", id: "content", name: "content", required: true, maxlength: "20000", rows: "12" },
        "Articles are Markdown: # headings, *emphasis*, lists, `code`, [links](https://example.org)."),
    };
    const general = el("p", { class: "error", role: "alert", id: "form-error" });
    const submit = el("button", { type: "submit", id: "write-submit" }, "Publish");
    const form = el("form", { class: "form", id: "write-form", novalidate: true },
      kinds, fields.title.node, fields.content.node, general, submit);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const kind = kindArticle.checked ? "article" : "post";
      submit.disabled = true;
      general.textContent = "";
      try {
        const item = await api("POST", "/api/" + kind + "s",
          { title: fields.title.input.value, content: fields.content.input.value });
        toast(kind === "post" ? "Post published." : "Article published.");
        navigate("/" + kind + "s/" + item.id);
      } catch (error) {
        if (current(generation)) showErrors(error, fields, general);
      } finally {
        submit.disabled = false;
      }
    });
    main.append(el("div", { class: "narrow wide" }, heading("Write"), form));
    focusHeading();
  }

  // --- start ---------------------------------------------------------------------------------------

  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[data-nav]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
        || event.shiftKey || event.altKey) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", route);
  document.getElementById("nav-signout").addEventListener("click", signOut);

  loadSession();
  showSession();
  connect();
  route();
  if (state.token) {
    // Check the saved session (expired, signed out elsewhere, password changed: 401 forgets it).
    api("GET", "/api/me").then((user) => {
      if (user && state.user && user.username !== state.user.username) saveSession(state.token, user);
    }).catch(() => {});
  }
})();
