// pkt-line framing: encoding, the strict streaming reader, and side-band packets.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { isUserError } from '../src/errors.ts';
import { FLUSH, MAX_PKT_DATA, MAX_SIDEBAND_DATA, packetText, pkt, PktLineReader, sideband, sidebandError, sidebandProgress, type Packet } from '../src/git/pkt-line.ts';

function readAll(reader: PktLineReader): Packet[] {
  const out: Packet[] = [];
  for (let p = reader.next(); p; p = reader.next()) out.push(p);
  return out;
}

function texts(packets: Packet[]): string[] {
  return packets.map((p) => (p.type === 'flush' ? '<flush>' : p.data.toString('latin1')));
}

function protocolErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isUserError(e), `expected a UserError, got ${String(e)}`);
    assert.equal(e.code, 'git_protocol_error');
    return e.message;
  }
  assert.fail('expected a protocol error');
}

describe('pkt-line', () => {
  test('pkt frames data with a four-digit hex length that counts itself', () => {
    assert.equal(pkt('hello\n').toString(), '000ahello\n');
    assert.equal(pkt('').toString(), '0004');
    assert.equal(pkt(Buffer.from([0, 1, 2])).toString('hex'), '30303037000102');
    assert.equal(FLUSH.toString(), '0000');
  });

  test('pkt refuses a payload larger than git allows', () => {
    assert.equal(pkt(Buffer.alloc(MAX_PKT_DATA)).length, 65520);
    assert.throws(() => pkt(Buffer.alloc(MAX_PKT_DATA + 1)), RangeError);
  });

  test('the reader returns lines and flushes across any chunking and keeps the rest as leftover', () => {
    const stream = Buffer.concat([pkt('one\n'), pkt('two'), FLUSH, Buffer.from('PACK-and-more')]);
    for (let size = 1; size <= stream.length; size++) {
      const reader = new PktLineReader();
      const packets: Packet[] = [];
      for (let at = 0; at < stream.length; at += size) {
        reader.push(stream.subarray(at, at + size));
        for (let p = reader.next(); p; p = reader.next()) {
          packets.push(p);
          if (p.type === 'flush') break;
        }
        if (packets.at(-1)?.type === 'flush') {
          reader.push(stream.subarray(at + size));
          break;
        }
      }
      assert.deepEqual(texts(packets), ['one\n', 'two', '<flush>'], `chunk size ${size}`);
      assert.equal(reader.leftover().toString(), 'PACK-and-more', `chunk size ${size}`);
      assert.equal(reader.buffered, 0);
    }
  });

  test('the reader waits for the rest of a packet instead of guessing', () => {
    const reader = new PktLineReader();
    reader.push(Buffer.from('000ahel'));
    assert.equal(reader.next(), undefined);
    assert.equal(reader.buffered, 7);
    reader.push(Buffer.from('lo\n'));
    assert.deepEqual(texts(readAll(reader)), ['hello\n']);
  });

  test('a length that is not four hex digits is a protocol error', () => {
    for (const bad of ['zzzz', '00g0', '-001', ' 004', '0x10']) {
      const reader = new PktLineReader();
      reader.push(Buffer.from(bad + 'xxxxxxxxxxxx'));
      assert.match(protocolErrorOf(() => reader.next()), /invalid pkt-line length/, bad);
    }
  });

  test('lengths 1 to 3 and lengths over 65520 are protocol errors', () => {
    for (const bad of ['0001', '0002', '0003']) {
      const reader = new PktLineReader();
      reader.push(Buffer.from(bad));
      assert.match(protocolErrorOf(() => reader.next()), /is not allowed/, bad);
    }
    for (const bad of ['fff1', 'ffff']) {
      const reader = new PktLineReader();
      reader.push(Buffer.from(bad));
      assert.match(protocolErrorOf(() => reader.next()), /exceeds 65520/, bad);
    }
    const reader = new PktLineReader();
    reader.push(Buffer.from('fff0'));
    assert.equal(reader.next(), undefined, '65520 is allowed and needs more bytes');
  });

  test('uppercase hex lengths are accepted as git does', () => {
    const reader = new PktLineReader();
    reader.push(Buffer.from('000Ahello\n'));
    assert.deepEqual(texts(readAll(reader)), ['hello\n']);
  });

  test('a length that lies about the bytes that follow never yields a packet', () => {
    const reader = new PktLineReader();
    reader.push(Buffer.from('0100short'));
    assert.equal(reader.next(), undefined);
    reader.push(Buffer.from('0000'));
    assert.equal(reader.next(), undefined, 'the flush is part of the claimed 256 bytes');
  });

  test('random bytes produce only packets, a wait, or a protocol error', () => {
    for (let round = 0; round < 2000; round++) {
      const reader = new PktLineReader();
      const bytes = randomBytes(1 + (round % 64));
      // Half the rounds start with a plausible length to get past the first check.
      if (round % 2 === 0) bytes.write((round % 70).toString(16).padStart(4, '0'), 0, 'latin1');
      reader.push(bytes);
      try {
        let total = 0;
        for (let p = reader.next(); p; p = reader.next()) total += p.type === 'flush' ? 4 : p.data.length + 4;
        assert.equal(total + reader.buffered, bytes.length, 'every byte is either consumed or still buffered');
      } catch (e) {
        assert.ok(isUserError(e) && e.code === 'git_protocol_error', `unexpected ${String(e)}`);
      }
    }
  });

  test('packetText drops one trailing newline only', () => {
    assert.equal(packetText(Buffer.from('abc\n')), 'abc');
    assert.equal(packetText(Buffer.from('abc')), 'abc');
    assert.equal(packetText(Buffer.from('abc\n\n')), 'abc\n');
  });

  test('side-band packets carry the band byte and split at 65515 data bytes', () => {
    assert.deepEqual(sideband(1, ''), []);
    const [one] = sidebandProgress('hi\n');
    assert.equal(one?.toString('latin1'), '0008\x02hi\n');
    const [err] = sidebandError('no');
    assert.equal(err?.toString('latin1'), '0007\x03no');

    const data = randomBytes(MAX_SIDEBAND_DATA * 2 + 10);
    const packets = sideband(1, data);
    assert.deepEqual(packets.map((p) => p.length), [65520, 65520, 15]);
    const reader = new PktLineReader();
    for (const p of packets) reader.push(p);
    const back = readAll(reader).map((p) => {
      assert.equal(p.type, 'data');
      if (p.type !== 'data') throw new Error('unreachable');
      assert.equal(p.data[0], 1);
      return p.data.subarray(1);
    });
    assert.ok(Buffer.concat(back).equals(data));
  });
});
