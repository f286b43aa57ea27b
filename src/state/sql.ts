/**
 * What a state function runs its statements on: the pool, or a transaction the caller opened
 * when the statement must commit or roll back with others.
 */
import type { Sql, TransactionSql } from "postgres";

export type Db = Sql | TransactionSql;
