// Types of vite-plugin-pwa's virtual module `virtual:pwa-register` (the plugin generates it at build time).
/// <reference types="vite-plugin-pwa/client" />
