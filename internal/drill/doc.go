// Package drill rehearses disaster recovery against a running CA and
// measures it: Restore backs the CA up, restores it into a scratch node on
// loopback and issues a probe SVID (RTO, RPO, state and chain checks);
// Failover issues probe SVIDs while leadership moves and counts records
// lost. `tier0 drill restore|failover` print the reports.
package drill
