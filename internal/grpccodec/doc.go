// Package grpccodec is the protobuf codec breachd's gRPC server and client
// use in place of grpc-go's own: the same encoding, with message buffers
// from a pool that does not clear them. grpc-go's codec gathers a received
// message of more than 32 KiB into a 1 MiB buffer of its default pool and
// clears all of it first, and marshals a sent one into such a buffer too: for
// a bulk batch of 2,000 digests (64 KB) that clearing was 14% of the
// daemon's CPU in a sweep (bench/README.md). Nothing reads a buffer past
// what was written to it: proto.Unmarshal copies what it keeps, and a
// marshalled message is sent up to its length.
package grpccodec
