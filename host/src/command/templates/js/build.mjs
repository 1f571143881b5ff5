// Builds {{name}}.wasm, an uploadable component, with the pinned componentize-js.
// `npm install` first; then `npm run build`.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const here = dirname(fileURLToPath(import.meta.url));
// The WIT contract the helper package ships.
const wit = dirname(fileURLToPath(import.meta.resolve('projector-plugin/wit/projection.wit')));
await mkdir(join(here, '.build'), { recursive: true });
// The entry hands the host's imports to the helper and exports the projection.
const entry = join(here, '.build', 'entry.js');
await writeFile(
  entry,
  [
    "import * as state from 'projector:projection/state@0.1.0';",
    "import { write } from 'projector:projection/log@0.1.0';",
    "import { useHost } from 'projector-plugin';",
    "import { describe, handle } from '../index.js';",
    'useHost({ state, log: write });',
    'export { describe, handle };',
    '',
  ].join('\n'),
);
// One module with the helper (and any other package) in it: componentize-js resolves relative
// imports only, not packages in node_modules.
const bundled = join(here, '.build', 'bundle.js');
const bundle = await rolldown({ input: entry, external: [/^projector:projection\//], platform: 'neutral' });
await bundle.write({ file: bundled, format: 'esm' });
await bundle.close();
const { component } = await componentize({
  sourcePath: bundled,
  witPath: wit,
  worldName: 'projection',
  // No WASI at all: the component imports only the projection interfaces.
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(join(here, '{{name}}.wasm'), component);
await rm(join(here, '.build'), { recursive: true, force: true });
console.log(`built ${join(here, '{{name}}.wasm')}`);
