"""GRASP-02 outbound event sync: this relay as a client of the other relays its repositories
list, pulling what they accepted into our own intake. Kept apart from the websocket server it
is not part of."""
