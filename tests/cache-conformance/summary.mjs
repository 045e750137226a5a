// Scores a run of the HTTP cache test suite (http-cache-tests) the way SecureCart commits
// it: the share of the suite's *required* tests that passed, where a test whose dependency
// failed, and a test the command-line client does not run, count as not passed.
//
//   node summary.mjs RESULTS.json             # prints the score; exits 1 below the baseline
//   node summary.mjs RESULTS.json --update    # rewrites baseline.json and RESULTS.md
//
// The suite's own logic decides each test's result (lib/display.mjs: determineTestResult,
// which honours dependencies), over the same tests its client runs (tests/index.mjs and
// the Surrogate-Control tests).
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { determineTestResult } from 'http-cache-tests/lib/display.mjs'
import suites from 'http-cache-tests/tests/index.mjs'
import surrogate from 'http-cache-tests/tests/surrogate-control.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const [resultsFile, flag] = process.argv.slice(2)
if (!resultsFile) {
  console.error('usage: node summary.mjs RESULTS.json [--update]')
  process.exit(2)
}
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))
const version = JSON.parse(fs.readFileSync(path.join(here, 'node_modules/http-cache-tests/package.json'), 'utf8')).version
suites.push(surrogate)

// Why the required tests SecureCart does not pass are not passed, for RESULTS.md.
const why = {
  'freshness-max-age-s-maxage-private': 'a test of browser (private) caches; the command-line client skips it',
  'freshness-max-age-s-maxage-private-multiple': 'a test of browser (private) caches; the command-line client skips it',
  'cc-resp-immutable-stale': 'a test of browser caches; the command-line client skips it',
  'age-parse-prefix': 'expects `Age: 0,7200` to be fresh while `age-parse-dup-0` expects `Age: 0, 0` to be stale; SecureCart treats every list-valued `Age` as stale',
  'stale-close-must-revalidate': 'the origin drops the connection and the test then expects an answer the origin counted; the edge answers 502, as it must not serve the stale copy. No proxy in the published results passes these four',
  'stale-close-proxy-revalidate': 'as stale-close-must-revalidate',
  'stale-close-no-cache': 'as stale-close-must-revalidate',
  'stale-close-s-maxage=2': 'as stale-close-must-revalidate'
}

const symbols = { '✅': 'passed', '⛔️': 'failed', '⚪️': 'dependency failed', '-': 'not run', '🔹': 'setup failed', '⁉️': 'harness failed', '↻': 'retried' }
const bySuite = []
const notPassed = []
const kinds = { optimal: { passed: 0, total: 0 }, check: { yes: 0, total: 0 } }
let passed = 0
let total = 0
for (const suite of suites) {
  let suitePassed = 0
  let suiteTotal = 0
  for (const test of suite.tests) {
    const kind = test.kind || 'required'
    const symbol = determineTestResult(suites, test.id, results)[2]
    if (kind === 'optimal') {
      kinds.optimal.total++
      if (symbol === '✅') kinds.optimal.passed++
      continue
    }
    if (kind === 'check') {
      kinds.check.total++
      if (symbol === 'Y') kinds.check.yes++
      continue
    }
    suiteTotal++
    if (symbol === '✅') {
      suitePassed++
    } else {
      const detail = Array.isArray(results[test.id]) ? results[test.id].join(': ') : ''
      notPassed.push({ suite: suite.name, id: test.id, result: symbols[symbol] || symbol, detail })
    }
  }
  if (suiteTotal > 0) bySuite.push({ suite: suite.name, passed: suitePassed, total: suiteTotal })
  passed += suitePassed
  total += suiteTotal
}
const rate = Math.round((1000 * passed) / total) / 10
console.log(`http-cache-tests ${version}: ${passed} of ${total} required tests passed (${rate}%); ` +
  `optimal ${kinds.optimal.passed} of ${kinds.optimal.total}`)
for (const miss of notPassed) console.log(`  not passed: ${miss.id} (${miss.result}) ${miss.detail}`)

const baselineFile = path.join(here, 'baseline.json')
if (flag === '--update') {
  const baseline = { suite: `http-cache-tests ${version}`, required_passed: passed, required_total: total, required_pass_rate: rate }
  fs.writeFileSync(baselineFile, JSON.stringify(baseline, null, 2) + '\n')
  const lines = [
    '# HTTP cache conformance',
    '',
    `\`securecart proxy --cache --cache-set-cookie\` against the public HTTP cache test suite (npm \`http-cache-tests\` ${version}),`,
    'as `tests/cache-conformance/run.sh` runs it in CI (the suite asks that answers setting cookies',
    'be stored: `--cache-set-cookie`, which securecart does not do unless told to, as nginx and',
    'Varnish do not). A required test counts as passed only if it',
    'passed itself and every test it depends on passed; tests the command-line client does not',
    'run (those for browser caches) count as not passed.',
    '',
    `**${passed} of ${total} required tests passed: ${rate}%.** Also passed: ${kinds.optimal.passed} of ${kinds.optimal.total} optimal tests.`,
    '',
    '| group | required tests passed |',
    '|---|---:|',
    ...bySuite.map(row => `| ${row.suite} | ${row.passed} / ${row.total} |`),
    '',
    'Required tests not passed:',
    '',
    ...notPassed.map(miss => `- \`${miss.id}\` (${miss.suite}): ${miss.result}${miss.detail ? `, "${miss.detail}"` : ''}` +
      (why[miss.id] ? `. Why: ${why[miss.id]}.` : '')),
    ''
  ]
  fs.writeFileSync(path.join(here, 'RESULTS.md'), lines.join('\n'))
  console.log(`wrote ${baselineFile} and RESULTS.md`)
} else {
  const baseline = JSON.parse(fs.readFileSync(baselineFile, 'utf8'))
  if (rate < baseline.required_pass_rate) {
    console.error(`FAIL: ${rate}% of required tests passed, below the committed ${baseline.required_pass_rate}% (tests/cache-conformance/baseline.json)`)
    process.exit(1)
  }
  console.log(`ok: at or above the committed ${baseline.required_pass_rate}%`)
}
