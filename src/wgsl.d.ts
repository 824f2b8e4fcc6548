// WGSL sources are imported as strings (vite/vitest `?raw`; the CLI bundler does the same).
declare module '*.wgsl?raw' {
  const source: string;
  export default source;
}
