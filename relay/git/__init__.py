"""Where a push goes: git smart HTTP (`smart_http` routes and advertises; `request` reads
what a request is about; `upload` is the fetch path, `receive` the push path), the pkt-line
framing, the pure push rules (`push_auth`) and the gate that gathers what they need and
tells the purgatory (`push_gate`). git itself runs as a subprocess started by `spawn`."""
