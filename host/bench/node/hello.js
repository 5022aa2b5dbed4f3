// The Node.js `http` hello the benchmark compares with (what CloudBase users run).
const http = require("http");
const port = Number(process.argv[2] || 8090);
http
  .createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end('{"hello":"world"}');
    });
  })
  .listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
