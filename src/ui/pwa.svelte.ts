// Contract: the service worker's side of the page: registers it (vite-plugin-pwa), and exposes whether the app is
// ready offline, whether an update waits, and whether the network is up.

import { registerSW } from 'virtual:pwa-register';

class PwaState {
  offlineReady = $state(false);
  needRefresh = $state(false);
  online = $state(typeof navigator === 'undefined' ? true : navigator.onLine);
  private updateSW: ((reload?: boolean) => Promise<void>) | null = null;

  start(): void {
    addEventListener('online', () => (this.online = true));
    addEventListener('offline', () => (this.online = false));
    if (!('serviceWorker' in navigator)) return;
    this.updateSW = registerSW({
      immediate: true,
      onOfflineReady: () => (this.offlineReady = true),
      onNeedRefresh: () => (this.needRefresh = true),
      onRegisterError: (e: unknown) => console.warn('service worker registration failed', e),
    });
  }

  update(): void {
    void this.updateSW?.(true);
  }
}

export const pwa = new PwaState();
