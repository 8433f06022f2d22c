/**
 * The other serving processes of this machine (worker mode), reached through the primary over the
 * cluster's IPC channel. Nothing here exists with one process (or across replicas on other
 * machines, which share only the database).
 */
export interface Peers {
  /**
   * Settles once each other worker has applied this one's Chron events up to `seq` (or, for one that
   * does not answer, after the bound the primary gives it: CLAIIM_SYNC_MAX_LAG_MS). Never rejects.
   */
  applied(seq: number): Promise<void>;
}
