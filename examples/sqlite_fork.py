"""A thread inside a SQLite query when the program forks: the child inherits the
connection's mutex held (a C mutex in heap memory). Run it audited:

    forkaudit run -- python examples/sqlite_fork.py
"""
import os, sqlite3, threading, sys, time
started = threading.Event()
def work():
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    started.set()
    conn.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 30000000) SELECT count(*) FROM c").fetchall()
t = threading.Thread(target=work, name="sql-worker", daemon=True); t.start()
started.wait(); time.sleep(0.3)
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
