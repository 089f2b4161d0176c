#!/usr/bin/env python3
"""An unmodified application that never pauses, for the WAL bound test: Debian's Python sqlite3.

argv: DB MODE COUNT. MODE "write": COUNT transactions one after the other, with nothing between them (each
records its id in tx_log and rewrites one row of about a page), then prints the last id committed. MODE
"read": short read transactions (each reads the table through, then a pause of 2 ms: a reader beside the
application, not a second process spinning on the CPU) until tx_log holds id COUNT, then prints how many.
The settings are the ones the README asks of every application: WAL, wal_autocheckpoint=0, busy_timeout.
"""
import random, sqlite3, sys, time

path, mode, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = sqlite3.connect(path, isolation_level=None, timeout=10)
db.execute('pragma busy_timeout=10000')
count = 0
if mode == 'write':
    db.execute('pragma journal_mode=wal')
    db.execute('pragma wal_autocheckpoint=0')
    db.execute('create table if not exists items(id integer primary key, k text, v blob)')
    db.execute('create table if not exists tx_log(txid integer primary key, node text)')
    rng = random.Random(11)
    txid = db.execute('select coalesce(max(txid), 0) from tx_log').fetchone()[0]
    for _ in range(target):
        txid += 1
        db.execute('begin immediate')
        db.execute('insert into tx_log values (?, ?)', (txid, 'busy'))
        db.execute('insert or replace into items(id, k, v) values (?, ?, ?)', (rng.randint(1, 300), 'k%d' % txid, rng.randbytes(3500)))
        db.execute('commit')
    count = txid
else:
    last = 0
    while last < target:
        db.execute('begin')
        db.execute('select count(*), sum(length(v)) from items').fetchone()
        last = db.execute('select coalesce(max(txid), 0) from tx_log').fetchone()[0]
        db.execute('commit')
        count += 1
        time.sleep(0.002)
db.close()
print(count)
