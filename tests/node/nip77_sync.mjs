// One NIP-77 reconciliation by nostr-tools' NegentropySync against a relay.
// argv: relay url, a JSON file {"filter": {...}, "items": [[created_at, id], ...]}.
// Prints one JSON line {"have": [...], "need": [...], "error": null | string}.
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { nip77 } from 'nostr-tools'

const { NegentropyStorageVector, NegentropySync } = nip77

useWebSocketImplementation(WebSocket)
const [url, inputPath] = process.argv.slice(2)
const input = JSON.parse(readFileSync(inputPath, 'utf8'))
const storage = new NegentropyStorageVector()
for (const [createdAt, id] of input.items) storage.insert(createdAt, id)
storage.seal()

const relay = await Relay.connect(url)
const have = []
const need = []
const finished = new Promise((resolve) => {
  const sync = new NegentropySync(relay, storage, input.filter, {
    onhave: (id) => have.push(id),
    onneed: (id) => need.push(id),
    onclose: (error) => resolve(error ?? null),
  })
  sync.start()
})
const error = await finished
console.log(JSON.stringify({ have, need, error }))
relay.close()
process.exit(0)
