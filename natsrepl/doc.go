// Package natsrepl is breachd's NATS JetStream adapter: read replicas fed
// by corpus snapshots and deltas, on a JetStream cluster operators already
// run. JetStream replicates and survives node loss (Raft); breachd adds no
// consensus of its own.
//
// The writer's Publisher puts each backup of the corpus (store.Backup: a
// snapshot when the bucket has none, then a delta after every change) as
// an object in an object-store bucket, and only then records it in a
// key-value bucket: "d.<since>" names the delta that follows Badger version
// <since> (a snapshot is "d.0"), "snapshot" the newest snapshot, "current"
// the newest entry, "writer" the writer's gRPC address. Each entry carries
// the object's SHA-256.
//
// A replica's Follower watches "current", downloads what it lacks in order
// (a snapshot first when its corpus is empty), checks each object's SHA-256,
// and applies it (store.ApplyBackup): each becomes visible all at once. It
// records what it applied in the data directory, so that a restart goes on
// from there and an apply that a crash cut short is done again before the
// replica serves. An object that fails its checksum or does not apply is
// rejected, logged and retried; the replica keeps serving what it has.
package natsrepl
