/* How SQLite schema size grows with one FTS5 index per agent: see bench/README.md
   ("Knowledge index tables and SQLite schema size") for how to build and run it. */
#include "sqlite3.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static void ex(sqlite3*d,const char*s){char*e=0;if(sqlite3_exec(d,s,0,0,&e)){fprintf(stderr,"%s: %s\n",s,e);exit(1);}}
int main(int c,char**v){int n=atoi(v[1]);const char*p=c>2?v[2]:"/tmp/fts_schema_scaling.db";char b[512];
 unlink(p);snprintf(b,512,"%s-wal",p);unlink(b);snprintf(b,512,"%s-shm",p);unlink(b);
 sqlite3*a,*d;sqlite3_open(p,&a);ex(a,"pragma journal_mode=wal");ex(a,"create table knowledge_chunks(id integer primary key, agent_id int, heading text, content text)");
 double t=now();ex(a,"begin");for(int i=0;i<n;i++){snprintf(b,512,"create virtual table knowledge_fts_%d using fts5(heading, content, content='', contentless_delete=1, tokenize='porter unicode61')",i);ex(a,b);}ex(a,"commit");
 printf("create %d tables in one transaction: %.0f ms\n",n,now()-t);
 t=now();sqlite3_open(p,&d);ex(d,"select count(*) from knowledge_chunks");printf("open + first query: %.1f ms\n",now()-t);
 t=now();ex(a,"create virtual table knowledge_fts_x using fts5(heading, content, content='', contentless_delete=1)");printf("one more create: %.1f ms\n",now()-t);
 t=now();ex(d,"select count(*) from knowledge_chunks");printf("next query elsewhere after the change: %.1f ms\n",now()-t);
 t=now();ex(d,"select count(*) from knowledge_chunks");printf("and the one after: %.3f ms\n",now()-t);
 t=now();ex(d,"select count(*) from knowledge_fts_7");printf("first query of one index: %.3f ms\n",now()-t);
 return 0;}
