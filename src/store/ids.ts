// Contract: stable, storage-safe ids: a slug of a display name plus a short hash of what identifies the content,
// so importing or loading the same thing again lands in the same place (and resumes or reuses it).

export function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 48) || 'item';
}

/** FNV-1a, 32 bits, as 8 hex digits. Not cryptographic: only tells inputs apart. */
export function shortHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}
