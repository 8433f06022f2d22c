/**
 * WebAssembly.compile, holding the process open until the module is compiled.
 *
 * WARNING: with eager compilation (--no-wasm-lazy-compilation, which the evaluation pool sets), a
 * pending WebAssembly.compile does not keep Node.js 24 running: a process with nothing else to wait
 * for exits at once with status 0, the promise never settled. CLAIIM hits this at start-up, when the
 * pool compiles OPA's builtin module before anything listens (seen on 24.18: `node dist/src/main.js`
 * exited 0 after "lease taken"). Node.js 20 waits. A referenced timer holds the process open.
 */
export async function compileHeld(bytes: Parameters<typeof WebAssembly.compile>[0]): Promise<WebAssembly.Module> {
  const hold = setInterval(() => undefined, 60_000);
  try {
    return await WebAssembly.compile(bytes);
  } finally {
    clearInterval(hold);
  }
}
