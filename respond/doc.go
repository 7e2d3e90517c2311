// Package respond turns a function's answers into Kafka records and writes
// them to a response topic: at least once, each batch's records
// acknowledged by the brokers before its offsets may be committed, or
// exactly once, a partition's records and its offsets committed in one
// Kafka transaction.
//
// What a function may answer is Parse's rule; where a record goes is
// Partitioner's; which input a record came from is written in its headers
// (Source). The writers hold no state of the connector's: the caller says
// when a batch's records are written and which offset a transaction
// commits.
package respond
