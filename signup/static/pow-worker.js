// Solves the sign-up captcha: finds n ≤ max with SHA-256(salt + n) = challenge (hex). Runs in a Web Worker.
self.onmessage = async function (e) {
  var d = e.data, enc = new TextEncoder(), t0 = Date.now();
  for (var n = 0; n <= d.max; n++) {
    var buf = await crypto.subtle.digest("SHA-256", enc.encode(d.salt + n));
    var b = new Uint8Array(buf), hex = "";
    for (var i = 0; i < b.length; i++) hex += (b[i] < 16 ? "0" : "") + b[i].toString(16);
    if (hex === d.challenge) { self.postMessage({ number: n, took: Date.now() - t0 }); return; }
  }
  self.postMessage({ number: -1, took: Date.now() - t0 });
};
