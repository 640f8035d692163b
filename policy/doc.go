// Package policy turns the facts of an assessment (breachd.Assessment: the
// account's breaches, what is known of its password in each, the
// password's prevalence) into a decision for a sign-in flow: rules from
// the configuration, evaluated in order, each naming the decision it
// asks for; the strictest decision of the rules that fire wins, and every
// rule that fires is a reason. In report-only mode the decision is
// computed, counted and logged, and the answer is allow.
package policy
