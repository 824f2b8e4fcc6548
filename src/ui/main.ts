// Contract: the page's entry: global styles, the service worker, and App mounted on #app.
import { mount } from 'svelte';
import App from './App.svelte';
import { pwa } from './pwa.svelte.ts';
import './app.css';

pwa.start();
mount(App, { target: document.getElementById('app')! });
