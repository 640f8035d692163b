// The body Kratos posts to breachd's POST /v1/hooks/kratos: the address to
// assess (breachd hashes it on arrival and never stores or logs it) and the
// identity's admin metadata, which breachd returns with its "breachd" entry
// added (Kratos replaces metadata_admin whole with what a hook returns).
function(ctx) {
  email: ctx.identity.traits.email,
  metadata_admin: if std.objectHas(ctx.identity, 'metadata_admin') then ctx.identity.metadata_admin else null,
}
