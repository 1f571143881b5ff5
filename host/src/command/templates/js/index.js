/**
 * @file `{{name}}`: one row per record key, with the last event type seen and how many events
 * arrived. A starting point: change `describe` and `handle` to build your read model.
 */

import { field, increment, postgres, projection, spec, upsert } from 'projector-plugin';

/** The collection this projection writes. */
export const COLLECTION = '{{collection}}';

export const { describe, handle } = projection({
  describe: () =>
    spec('{{name}}', 1, 'Events per record key.', [
      postgres(COLLECTION, 'One row per record key.')
        .field(field.text('id').description('The record key.'))
        .field(field.text('last_type').filterable().description('Type of the last event.'))
        .field(field.integer('events').sortable().description('Events received.'))
        .primaryKey('id'),
    ]),

  handle: (event) => {
    const { key, type } = event;
    if (key === undefined || type === undefined) return [];
    return [upsert(COLLECTION, key).set('last_type', type), increment(COLLECTION, key).add('events', 1)];
  },
});
