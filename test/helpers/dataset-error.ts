// The DatasetError a call throws (any other error is rethrown; no error fails the test).
import { DatasetError } from '../../src/data/index.ts';

export function errorOf(fn: () => unknown): DatasetError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DatasetError) return e;
    throw e;
  }
  throw new Error('expected a DatasetError');
}
