// Loaded before the suite's origin server (`node --import`): a server started with only a
// port listens on 127.0.0.1 instead of every interface, as every test server here must.
import net from 'node:net'

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args.length >= 1 && (typeof args[0] === 'number' || typeof args[0] === 'string') &&
      (args.length === 1 || typeof args[1] === 'function')) {
    return listen.call(this, args[0], '127.0.0.1', ...args.slice(1))
  }
  return listen.apply(this, args)
}
