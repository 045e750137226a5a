/* SecureCart storefront: plain ES2020, no dependencies, no build step. */
(() => {
  'use strict';

  const app = document.getElementById('app');
  const flashEl = document.getElementById('flash');
  const page = document.body.dataset.page || 'home';
  const params = new URLSearchParams(location.search);
  const PER_PAGE = 24;

  // ---------- helpers ----------
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };
  const esc = (v) => String(v ?? '').replace(/[&<>"'`]/g, (c) => ESC[c]);
  const enc = encodeURIComponent;
  const $ = (sel, root = document) => root.querySelector(sel);
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const clampQty = (v) => Math.min(99, Math.max(1, Math.floor(Number(v)) || 1));
  const loading = (text) => `<p class="loading">${esc(text)}</p>`;

  // Only same-origin URLs from the API are used as image sources.
  function safeUrl(u, fallback = '/static/logo.svg') {
    if (!u) return fallback;
    try {
      const url = new URL(String(u), location.origin);
      return url.origin === location.origin ? url.pathname + url.search : fallback;
    } catch { return fallback; }
  }

  const formatters = new Map();
  function money(minor, currency) {
    const cur = currency || 'USD';
    let f = formatters.get(cur);
    if (!f) {
      try { f = new Intl.NumberFormat(undefined, { style: 'currency', currency: cur }); }
      catch { f = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }
      formatters.set(cur, f);
    }
    return f.format((Number(minor) || 0) / 10 ** f.resolvedOptions().maximumFractionDigits);
  }

  function pathParam(re) {
    const m = location.pathname.match(re);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch { return null; }
  }

  function productsUrl({ q, category, page: n } = {}) {
    const p = new URLSearchParams();
    if (q) p.set('q', q);
    if (category) p.set('category', category);
    if (n && n > 1) p.set('page', String(n));
    const s = p.toString();
    return '/products' + (s ? '?' + s : '');
  }

  // Idempotency key: 32 hex chars from crypto.getRandomValues (works outside secure contexts).
  function newIdempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.status = status; this.code = code; this.body = body;
    }
  }

  async function api(path, { method = 'GET', body, headers = {} } = {}) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try { res = await fetch(path, opts); }
    catch { throw new ApiError(0, 'network_error', 'Could not reach the server. Check your connection and try again.', null); }
    let data = null;
    try { data = await res.json(); } catch { /* empty or non-JSON body */ }
    if (!res.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(res.status, e.code || `http_${res.status}`,
        e.message || `Something went wrong (HTTP ${res.status}). Please try again.`, data);
    }
    return data;
  }

  // ---------- shared UI ----------
  const alertHtml = (msg, kind = 'error') =>
    `<div class="alert alert-${kind}" role="${kind === 'error' ? 'alert' : 'status'}">${esc(msg)}</div>`;

  let flashTimer;
  function flash(msg, kind = 'error') {
    if (!flashEl) return;
    clearTimeout(flashTimer);
    flashEl.innerHTML = `<div class="alert alert-${kind} alert-dismissible" role="${kind === 'error' ? 'alert' : 'status'}">` +
      `<span>${esc(msg)}</span><button type="button" class="alert-close" aria-label="Dismiss">&times;</button></div>`;
    if (kind !== 'error') flashTimer = setTimeout(() => { flashEl.innerHTML = ''; }, 4000);
  }
  flashEl?.addEventListener('click', (e) => { if (e.target.closest('.alert-close')) flashEl.innerHTML = ''; });

  function setCartCount(cart) {
    const badge = document.getElementById('cart-count');
    if (badge && cart && Number.isFinite(cart.item_count)) badge.textContent = String(cart.item_count);
  }

  function notFound(title, text, href, linkText) {
    app.innerHTML = `<section class="empty"><h1>${esc(title)}</h1><p>${esc(text)}</p>` +
      `<a class="btn" href="${esc(href)}">${esc(linkText)}</a></section>`;
  }

  function productCard(p) {
    const inStock = p.stock > 0;
    return `<article class="card">
      <a class="card-link" href="/products/${enc(p.id)}">
        <img src="${esc(safeUrl(p.image_url))}" alt="${esc(p.name)}" loading="lazy" width="300" height="300">
        <h3 class="card-title">${esc(p.name)}</h3>
      </a>
      <p class="price">${esc(money(p.price_minor, p.currency))}</p>
      <p class="stock ${inStock ? 'in' : 'out'}">${inStock ? 'In stock' : 'Out of stock'}</p>
      <button type="button" class="btn add-to-cart" data-product-id="${esc(p.id)}" data-name="${esc(p.name)}"${inStock ? '' : ' disabled'}>Add to cart</button>
    </article>`;
  }

  const productGrid = (items) => `<div class="grid">${items.map(productCard).join('')}</div>`;

  // Add-to-cart buttons anywhere on the page (delegated).
  document.addEventListener('click', async (e) => {
    const btn = e.target.closest('button.add-to-cart');
    if (!btn || btn.disabled) return;
    const qtyInput = btn.dataset.qtyInput ? document.getElementById(btn.dataset.qtyInput) : null;
    const quantity = qtyInput ? clampQty(qtyInput.value) : 1;
    if (qtyInput) qtyInput.value = String(quantity);
    const label = btn.textContent;
    btn.disabled = true;
    btn.textContent = 'Adding…';
    try {
      const cart = await api('/api/cart/items', { method: 'POST', body: { product_id: Number(btn.dataset.productId), quantity } });
      setCartCount(cart);
      btn.textContent = 'Added ✓';
      flash(`Added ${quantity} × ${btn.dataset.name || 'item'} to your cart.`, 'success');
      setTimeout(() => { btn.textContent = label; btn.disabled = false; }, 1200);
    } catch (err) {
      flash(err.message);
      btn.textContent = label;
      btn.disabled = false;
    }
  });

  // ---------- pages ----------
  async function renderHome() {
    app.innerHTML = `
      <section class="hero">
        <h1>Everyday goods, with a checkout you can trust.</h1>
        <p>Browse our catalog and pay safely &mdash; every order is placed exactly once.</p>
        <a class="btn" href="/products">Browse all products</a>
      </section>
      <section aria-labelledby="cat-h"><h2 id="cat-h">Shop by category</h2><div id="home-categories">${loading('Loading categories…')}</div></section>
      <section aria-labelledby="feat-h"><h2 id="feat-h">Featured products</h2><div id="home-products">${loading('Loading products…')}</div></section>`;
    const [cats, prods] = await Promise.allSettled([
      api('/api/catalog/categories'),
      api('/api/catalog/products?page=1&per_page=8'),
    ]);
    const catEl = $('#home-categories');
    if (cats.status === 'rejected') catEl.innerHTML = alertHtml(cats.reason.message);
    else {
      const list = cats.value.categories || [];
      catEl.innerHTML = list.length ? `<ul class="tiles">${list.map((c) => `
        <li><a class="tile" href="${esc(productsUrl({ category: c.slug }))}">
          <span class="tile-name">${esc(c.name)}</span>
          <span class="tile-count">${esc(plural(Number(c.product_count) || 0, 'product'))}</span></a></li>`).join('')}</ul>`
        : '<p class="muted">No categories yet.</p>';
    }
    const prodEl = $('#home-products');
    if (prods.status === 'rejected') prodEl.innerHTML = alertHtml(prods.reason.message);
    else {
      const items = (prods.value.items || []).slice(0, 8);
      prodEl.innerHTML = items.length ? productGrid(items) : '<p class="muted">No products yet.</p>';
    }
  }

  async function renderProducts() {
    const q = (params.get('q') || '').trim();
    const category = params.get('category') || '';
    const pageNo = Math.max(1, parseInt(params.get('page'), 10) || 1);
    app.innerHTML = `
      <div class="page-head"><h1 id="products-title">Products</h1><p id="products-summary" class="muted"></p></div>
      <nav id="category-chips" class="chips" aria-label="Categories"></nav>
      <div id="product-results">${loading('Loading products…')}</div>`;
    const apiQs = new URLSearchParams({ page: String(pageNo), per_page: String(PER_PAGE) });
    if (q) apiQs.set('q', q);
    if (category) apiQs.set('category', category);
    const [catsR, prodsR] = await Promise.allSettled([
      api('/api/catalog/categories'),
      api('/api/catalog/products?' + apiQs),
    ]);

    const cats = catsR.status === 'fulfilled' ? catsR.value.categories || [] : [];
    const current = cats.find((c) => c.slug === category);
    $('#products-title').textContent = current ? current.name : category ? `Category: ${category}` : q ? 'Search results' : 'All products';
    const chip = (href, text, active) =>
      `<a class="chip${active ? ' active' : ''}" href="${esc(href)}"${active ? ' aria-current="page"' : ''}>${esc(text)}</a>`;
    $('#category-chips').innerHTML = cats.length
      ? chip(productsUrl({ q }), 'All', !category) + cats.map((c) => chip(productsUrl({ q, category: c.slug }), c.name, c.slug === category)).join('')
      : '';

    const results = $('#product-results');
    if (prodsR.status === 'rejected') { results.innerHTML = alertHtml(prodsR.reason.message); return; }
    const data = prodsR.value;
    const items = data.items || [];
    const total = Number(data.total) || 0;
    const totalPages = Math.max(1, Number(data.total_pages) || 1);
    const cur = Number(data.page) || pageNo;
    $('#products-summary').innerHTML = q
      ? `${esc(plural(total, 'result'))} for <strong class="search-query">“${esc(q)}”</strong> &middot; <a href="${esc(productsUrl({ category }))}">Clear search</a>`
      : esc(plural(total, 'product'));

    if (!items.length && cur <= 1) {
      results.innerHTML = `<div class="empty"><p>No products match your search.</p><a class="btn" href="/products">See all products</a></div>`;
      return;
    }
    const prev = cur > 1
      ? `<a class="btn btn-secondary" rel="prev" href="${esc(productsUrl({ q, category, page: cur - 1 }))}">&larr; Previous</a>`
      : `<span class="btn btn-secondary disabled" aria-disabled="true">&larr; Previous</span>`;
    const next = cur < totalPages
      ? `<a class="btn btn-secondary" rel="next" href="${esc(productsUrl({ q, category, page: cur + 1 }))}">Next &rarr;</a>`
      : `<span class="btn btn-secondary disabled" aria-disabled="true">Next &rarr;</span>`;
    results.innerHTML = (items.length ? productGrid(items) : '<div class="empty"><p>There are no products on this page.</p></div>') +
      `<nav class="pagination" aria-label="Pagination">${prev}<span class="page-info">Page ${esc(cur)} of ${esc(totalPages)}</span>${next}</nav>`;
  }

  async function renderProduct() {
    const id = pathParam(/^\/products\/([^/]+)\/?$/);
    if (!id) return notFound('Product not found', 'That product does not exist.', '/products', 'Browse products');
    app.innerHTML = loading('Loading product…');
    let p;
    try { p = await api('/api/catalog/products/' + enc(id)); }
    catch (err) {
      if (err.status === 404) return notFound('Product not found', 'That product does not exist or is no longer available.', '/products', 'Browse products');
      app.innerHTML = alertHtml(err.message);
      return;
    }
    document.title = `${p.name} · SecureCart`;
    const inStock = p.stock > 0;
    const max = inStock ? Math.min(99, p.stock) : 1;
    app.innerHTML = `
      <nav class="breadcrumb" aria-label="Breadcrumb"><a href="/products">Products</a> /
        <a href="${esc(productsUrl({ category: p.category }))}">${esc(p.category_name || p.category)}</a></nav>
      <article class="product-detail">
        <img class="product-image" src="${esc(safeUrl(p.image_url))}" alt="${esc(p.name)}" width="480" height="480">
        <div class="product-info">
          <h1>${esc(p.name)}</h1>
          <p><a class="category-link" href="${esc(productsUrl({ category: p.category }))}">${esc(p.category_name || p.category)}</a></p>
          <p class="price price-large">${esc(money(p.price_minor, p.currency))}</p>
          <p class="stock ${inStock ? 'in' : 'out'}">${inStock ? `In stock (${esc(p.stock)} available)` : 'Out of stock'}</p>
          <p class="description">${esc(p.description)}</p>
          <div class="buy-row">
            <label for="qty">Quantity</label>
            <input id="qty" name="quantity" type="number" min="1" max="${esc(max)}" value="1" inputmode="numeric"${inStock ? '' : ' disabled'}>
            <button type="button" class="btn add-to-cart" data-product-id="${esc(p.id)}" data-name="${esc(p.name)}" data-qty-input="qty"${inStock ? '' : ' disabled'}>Add to cart</button>
          </div>
        </div>
      </article>`;
  }

  function cartHtml(cart) {
    const items = cart.items || [];
    if (!items.length) {
      return `<div class="empty"><p>Your cart is empty.</p><a class="btn" href="/products">Browse products</a></div>`;
    }
    const rows = items.map((it) => `
      <tr data-product-id="${esc(it.product_id)}">
        <td><div class="cart-product">
          <img src="${esc(safeUrl(it.image_url))}" alt="" width="56" height="56">
          <span><a href="/products/${enc(it.product_id)}">${esc(it.name)}</a>
          ${it.stock !== undefined && it.quantity > it.stock ? `<small class="stock out">Only ${esc(it.stock)} left</small>` : ''}</span>
        </div></td>
        <td>${esc(money(it.unit_price_minor, cart.currency))}</td>
        <td><label class="visually-hidden" for="qty-${esc(it.product_id)}">Quantity for ${esc(it.name)}</label>
          <input id="qty-${esc(it.product_id)}" class="qty-input" type="number" min="1" max="99" inputmode="numeric"
            value="${esc(it.quantity)}" data-product-id="${esc(it.product_id)}"></td>
        <td class="num">${esc(money(it.line_total_minor, cart.currency))}</td>
        <td><button type="button" class="link-button remove-item" data-product-id="${esc(it.product_id)}"
          aria-label="Remove ${esc(it.name)}">Remove</button></td>
      </tr>`).join('');
    return `<div class="table-wrap"><table class="cart-table">
        <thead><tr><th scope="col">Product</th><th scope="col">Price</th><th scope="col">Quantity</th>
          <th scope="col" class="num">Total</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>${rows}</tbody>
        <tfoot><tr><th scope="row" colspan="3">Total (${esc(plural(Number(cart.item_count) || 0, 'item'))})</th>
          <td class="num" id="cart-total">${esc(money(cart.total_minor, cart.currency))}</td><td></td></tr></tfoot>
      </table></div>
      <div class="cart-actions"><a href="/products">Continue shopping</a><a class="btn" id="checkout-link" href="/checkout">Checkout</a></div>`;
  }

  async function renderCart() {
    app.innerHTML = `<h1>Your cart</h1><div id="cart-message"></div><div id="cart-body">${loading('Loading your cart…')}</div>`;
    const body = $('#cart-body');
    const msg = $('#cart-message');
    let cart;
    const draw = (c) => {
      const a = document.activeElement;
      const cls = a && ['qty-input', 'remove-item'].find((k) => a.classList.contains(k));
      const pid = cls ? a.dataset.productId : null;
      cart = c;
      setCartCount(c);
      body.innerHTML = cartHtml(c);
      if (pid) body.querySelector(`.${cls}[data-product-id="${CSS.escape(pid)}"]`)?.focus();
    };
    try { draw(await api('/api/cart')); }
    catch (err) { body.innerHTML = alertHtml(err.message); return; }

    let chain = Promise.resolve(); // serialize updates so responses apply in order
    const mutate = (path, opts) => {
      chain = chain.then(async () => {
        msg.innerHTML = '';
        body.setAttribute('aria-busy', 'true');
        try { draw(await api(path, opts)); }
        catch (err) { msg.innerHTML = alertHtml(err.message); draw(cart); }
        finally { body.removeAttribute('aria-busy'); }
      });
    };
    body.addEventListener('change', (e) => {
      const inp = e.target.closest('input.qty-input');
      if (!inp) return;
      const quantity = clampQty(inp.value);
      inp.value = String(quantity);
      mutate(`/api/cart/items/${enc(inp.dataset.productId)}`, { method: 'PUT', body: { quantity } });
    });
    body.addEventListener('click', (e) => {
      const b = e.target.closest('button.remove-item');
      if (!b || b.disabled) return;
      b.disabled = true;
      mutate(`/api/cart/items/${enc(b.dataset.productId)}`, { method: 'DELETE' });
    });
  }

  const summaryHtml = (cart) => `
    <h2>Order summary</h2>
    <ul class="summary-list">${(cart.items || []).map((it) => `
      <li><span>${esc(it.quantity)} &times; ${esc(it.name)}</span><span>${esc(money(it.line_total_minor, cart.currency))}</span></li>`).join('')}
    </ul>
    <p class="summary-total"><span>Total</span><strong>${esc(money(cart.total_minor, cart.currency))}</strong></p>
    <a href="/cart">Edit cart</a>`;

  async function renderCheckout() {
    app.innerHTML = loading('Loading checkout…');
    let cart;
    try { cart = await api('/api/cart'); }
    catch (err) { app.innerHTML = `<h1>Checkout</h1>${alertHtml(err.message)}`; return; }
    setCartCount(cart);
    if (!cart.items || !cart.items.length) {
      return notFound('Checkout', 'Your cart is empty, so there is nothing to check out yet.', '/products', 'Browse products');
    }
    app.innerHTML = `
      <h1>Checkout</h1>
      <div class="checkout">
        <form id="checkout-form" class="panel">
          <div id="checkout-message"></div>
          <div class="field"><label for="co-email">Email</label>
            <input id="co-email" name="email" type="email" autocomplete="email" required maxlength="254"></div>
          <div class="field"><label for="co-name">Full name</label>
            <input id="co-name" name="name" type="text" autocomplete="name" required maxlength="200"></div>
          <div class="field"><label for="co-address">Shipping address</label>
            <input id="co-address" name="address" type="text" autocomplete="street-address" required maxlength="500"></div>
          <div class="field"><label for="co-card">Test card</label>
            <select id="co-card" name="card_token">
              <option value="tok_visa">Visa 4242 (approves)</option>
              <option value="tok_chargeDeclined">Declined card</option>
              <option value="tok_unavailable">Processor unavailable (retryable)</option>
            </select>
            <small class="muted">Test mode: no real payment is taken.</small></div>
          <button id="place-order" class="btn btn-large" type="submit">Place order</button>
        </form>
        <aside id="order-summary" class="panel" aria-label="Order summary">${summaryHtml(cart)}</aside>
      </div>`;

    const form = $('#checkout-form');
    const btn = $('#place-order');
    const msg = $('#checkout-message');
    // One key per checkout attempt: reused on retries/double clicks, rotated only
    // when the previous attempt definitively failed (declined or rejected).
    let idemKey = newIdempotencyKey();
    let submitting = false;

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (submitting) return;
      submitting = true;
      btn.disabled = true;
      btn.textContent = 'Placing order…';
      msg.innerHTML = '';
      const fd = new FormData(form);
      const body = {
        email: String(fd.get('email') || '').trim(),
        name: String(fd.get('name') || '').trim(),
        address: String(fd.get('address') || '').trim(),
        card_token: String(fd.get('card_token') || ''),
      };
      try {
        const data = await api('/api/checkout', { method: 'POST', body, headers: { 'Idempotency-Key': idemKey } });
        const order = data && data.order;
        if (!order || !order.id) throw new ApiError(500, 'bad_response', 'Unexpected response from the server. Please try again.', data);
        location.assign('/orders/' + enc(order.id));
        return; // keep the button disabled while navigating
      } catch (err) {
        if (err.status === 402) {
          idemKey = newIdempotencyKey(); // the old key is bound to the declined attempt
          msg.innerHTML = alertHtml(`${err.message} You can choose another card and place the order again.`);
        } else if (err.status === 0 || err.status === 503 || err.status >= 500) {
          // Retryable: keep the same key so a retry can never create a second order.
          msg.innerHTML = alertHtml(`${err.message} Please try again.`);
        } else if (err.status === 422 || (err.status === 409 && ['cart_empty', 'out_of_stock'].includes(err.code))) {
          idemKey = newIdempotencyKey(); // rejected before any order existed; request will change
          msg.innerHTML = alertHtml(err.message);
          if (err.status === 409) {
            api('/api/cart').then((c) => { setCartCount(c); $('#order-summary').innerHTML = summaryHtml(c); }).catch(() => {});
          }
        } else {
          msg.innerHTML = alertHtml(err.message);
        }
        submitting = false;
        btn.disabled = false;
        btn.textContent = 'Place order';
        msg.scrollIntoView({ block: 'nearest' });
      }
    });
  }

  async function renderOrder() {
    const id = pathParam(/^\/orders\/([^/]+)\/?$/);
    if (!id) return notFound('Order not found', 'We could not find that order.', '/products', 'Continue shopping');
    app.innerHTML = loading('Loading your order…');
    let o;
    try { o = await api('/api/orders/' + enc(id)); }
    catch (err) {
      if (err.status === 404) return notFound('Order not found', 'We could not find that order.', '/products', 'Continue shopping');
      app.innerHTML = alertHtml(err.message);
      return;
    }
    const declined = o.status === 'payment_declined';
    const created = new Date(o.created_at);
    const when = Number.isNaN(created.getTime()) ? String(o.created_at || '') : created.toLocaleString();
    const rows = (o.items || []).map((it) => `
      <tr><td>${esc(it.name)}</td><td class="num">${esc(it.quantity)}</td>
        <td class="num">${esc(money(it.unit_price_minor, o.currency))}</td>
        <td class="num">${esc(money(it.line_total_minor, o.currency))}</td></tr>`).join('');
    app.innerHTML = `
      <section class="order-confirmation">
        <h1>${declined ? 'Payment declined' : 'Thank you for your order!'}</h1>
        ${declined
          ? alertHtml('The payment for this order was declined, so it was not paid and nothing was charged. Please return to checkout and try another card.')
          : `<p>Your order is confirmed. Keep the order number below to find it again.</p>`}
        <dl class="order-meta">
          <dt>Order</dt><dd><code id="order-id">${esc(o.id)}</code></dd>
          <dt>Status</dt><dd><span id="order-status" class="status status-${declined ? 'declined' : 'ok'}" data-status="${esc(o.status)}">${esc(o.status)}</span></dd>
          <dt>Email</dt><dd>${esc(o.email)}</dd>
          <dt>Ship to</dt><dd>${esc(o.name)}<br>${esc(o.address)}</dd>
          ${when ? `<dt>Placed</dt><dd>${esc(when)}</dd>` : ''}
        </dl>
        <div class="table-wrap"><table class="order-table">
          <thead><tr><th scope="col">Item</th><th scope="col" class="num">Qty</th><th scope="col" class="num">Price</th><th scope="col" class="num">Total</th></tr></thead>
          <tbody>${rows}</tbody>
          <tfoot><tr><th scope="row" colspan="3">Total</th><td class="num" id="order-total">${esc(money(o.total_minor, o.currency))}</td></tr></tfoot>
        </table></div>
        <p>${declined ? '<a class="btn" href="/checkout">Back to checkout</a> ' : ''}<a href="/products">Continue shopping</a></p>
      </section>`;
  }

  // ---------- boot ----------
  const routes = { home: renderHome, products: renderProducts, product: renderProduct, cart: renderCart, checkout: renderCheckout, order: renderOrder };

  function init() {
    const search = $('.site-search input[name="q"]');
    if (search && page === 'products') search.value = params.get('q') || '';
    const navKey = page === 'product' ? 'products' : page;
    $(`.site-nav a[data-nav="${navKey}"]`)?.setAttribute('aria-current', 'page');
    // cart and checkout pages fetch the cart themselves (avoids a stale-count race)
    if (page !== 'cart' && page !== 'checkout') api('/api/cart').then(setCartCount).catch(() => {});
    const render = routes[page] || (() => notFound('Page not found', 'That page does not exist.', '/', 'Go to the home page'));
    Promise.resolve().then(render).catch((err) => {
      app.innerHTML = alertHtml((err && err.message) || 'Something went wrong. Please reload the page.');
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
