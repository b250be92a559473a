// The backing services' test parts: the local Postgres and Redis images scripts/provision.sh
// builds (Debian's packages behind the official images' entrypoint contract), and the fixture
// app that writes and reads through DATABASE_URL and REDIS_URL.
import { BASE_IMAGE } from './daemon.ts';

/** `berth serve --postgres-image` in tests. */
export const POSTGRES_TEST_IMAGE = process.env.BERTH_TEST_POSTGRES_IMAGE ?? 'berth-test/postgres:15';
/** `berth serve --redis-image` in tests. */
export const REDIS_TEST_IMAGE = process.env.BERTH_TEST_REDIS_IMAGE ?? 'berth-test/redis:7';
/** What the fixture app's Dockerfile builds FROM (it has node). */
export const FIXTURE_BASE_IMAGE = BASE_IMAGE;
