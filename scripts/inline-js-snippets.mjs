// Inline wasm-bindgen's JS snippets (inference-wasm/js/*.js, copied to PKG/snippets/) into the
// glue PKG/inference.js, for both the ESM (--target web) and CommonJS (--target nodejs) glue.
// Why: a snippet is an extra ES module under a hashed path, which edge-worker configs would
// have to list and CommonJS cannot require on older Node. Snippets may only declare
// `export function`s. Usage: node scripts/inline-js-snippets.mjs PKG_DIR...
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PATH = String.raw`(?:String\.raw\`|['"])(\./snippets/[^\`'"]+)[\`'"]`;
// Named imports (the functions are then in scope) and namespace imports (wasm's import object).
const NAMED = new RegExp(String.raw`^(?:import \{[^}]*\} from ${PATH}|const \{[^}]*\} = require\(${PATH}\));?$`, 'gm');
const NAMESPACE = new RegExp(String.raw`^(?:import \* as (\w+) from ${PATH}|const (\w+) = require\(${PATH}\));?$`, 'gm');

for (const pkg of process.argv.slice(2)) {
  const gluePath = join(pkg, 'inference.js');
  let glue = readFileSync(gluePath, 'utf8');
  const inlined = new Map(); // snippet path -> its function names
  const inline = (path) => {
    if (inlined.has(path)) return '';
    const source = readFileSync(join(pkg, path), 'utf8');
    if (/^\s*(import\b|export (?!function ))/m.test(source)) {
      throw new Error(`${join(pkg, path)}: snippets may only contain \`export function\` declarations`);
    }
    inlined.set(path, [...source.matchAll(/^export function (\w+)/gm)].map((m) => m[1]));
    return `// inlined snippet ${path}\n${source.replace(/^export function /gm, 'function ')}\n`;
  };
  glue = glue.replace(NAMED, (_, esm, cjs) => inline(esm ?? cjs));
  glue = glue.replace(NAMESPACE, (_, esmName, esm, cjsName, cjs) => {
    const path = esm ?? cjs;
    const code = inline(path);
    return `${code}const ${esmName ?? cjsName} = { __proto__: null, ${inlined.get(path).join(', ')} };`;
  });
  if (/(from |require\()\S*\.\/snippets\//.test(glue)) throw new Error(`${gluePath}: a snippet import was not inlined`);
  // One fix to the generated class as well: free() on a freed model (twice, or free() then
  // `using`'s Symbol.dispose) would pass a null pointer into wasm and throw; make it a no-op.
  const FREE = /(\n(\s*)free\(\) \{\n\s*const ptr = this\.__destroy_into_raw\(\);\n)/;
  if (!FREE.test(glue)) throw new Error(`${gluePath}: wasm-bindgen's free() changed shape; update scripts/inline-js-snippets.mjs`);
  glue = glue.replace(FREE, (_, head, indent) => `${head}${indent}    if (ptr === 0) return;\n`);
  writeFileSync(gluePath, glue);
  rmSync(join(pkg, 'snippets'), { recursive: true, force: true });
}
