// pretest: make sure Debian's Chromium (browser tests) and the Vulkan loader (Dawn on SwiftShader) are installed.
// Installs them with apt-get when missing and we are root; otherwise says what to install.
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';

const need = [];
if (!existsSync('/usr/bin/chromium')) need.push('chromium');
const hasVulkan = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1'].some(existsSync);
if (!hasVulkan) need.push('libvulkan1');
if (need.length) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    console.error(`Tests need Debian packages: ${need.join(' ')}. Install them: sudo apt-get install -y ${need.join(' ')}`);
    process.exit(1);
  }
  console.log(`Installing ${need.join(' ')} (apt-get)…`);
  execSync(`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${need.join(' ')}`, { stdio: 'inherit' });
}
