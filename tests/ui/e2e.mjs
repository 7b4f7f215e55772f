// End-to-end walk through the web UI in headless Chromium (Debian's), driven
// by playwright-core. Run by tests/ui/run.sh, which prepares a home with the
// e-commerce pipelines run once, two tokens, and `gridata serve`.
//
//   1. sign in (admin);
//   2. trigger ecommerce_orders and watch it finish;
//   3. open ecommerce.orders and time-travel to the previous snapshot;
//   4. roll back as admin; a viewer cannot;
//   5. follow lineage from analytics.customer_360 back to the raw files.
//
// Any console error or page error fails the test. Screenshots of each page
// go to $GRIDATA_UI_SHOTS.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const BASE = process.env.GRIDATA_UI_BASE;
const ADMIN = process.env.GRIDATA_UI_ADMIN_TOKEN;
const VIEWER = process.env.GRIDATA_UI_VIEWER_TOKEN;
const SHOTS = process.env.GRIDATA_UI_SHOTS;
const DAY = process.env.GRIDATA_UI_DAY;
for (const [k, v] of Object.entries({ BASE, ADMIN, VIEWER, SHOTS, DAY })) {
  if (!v) throw new Error(`e2e.mjs: ${k} is not set; run tests/ui/run.sh`);
}
mkdirSync(SHOTS, { recursive: true });

const problems = [];
const requests = [];
const browser = await chromium.launch({
  executablePath: process.env.GRIDATA_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
page.setDefaultTimeout(30_000);
page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console error: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("request", (r) => requests.push(r.url()));

let step = "start";
async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}
function check(cond, message) {
  if (!cond) throw new Error(`${step}: ${message}`);
}

async function signIn(token) {
  await page.goto(`${BASE}/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Pipelines" }).waitFor();
}

try {
  step = "1. sign in";
  await page.goto(`${BASE}/`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await shot("sign-in");
  await signIn(ADMIN);
  check((await page.locator("#who").textContent()).includes("admin"), "the header does not say admin");
  await page.locator("tr", { hasText: "ecommerce_orders" }).first().waitFor();
  await shot("pipelines");

  step = "2. trigger and watch";
  const row = page.locator("tbody tr", { has: page.getByRole("link", { name: "ecommerce_orders", exact: true }) });
  await row.getByRole("button", { name: "Trigger" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel(/^date/).fill(DAY);
  await dialog.getByRole("button", { name: "Trigger run" }).click();
  await page.waitForURL(/#\/runs\//);
  await page.getByRole("heading", { name: /^Run / }).waitFor();
  await page.locator(".title-row .badge.state-success").waitFor({ timeout: 180_000 });
  check(await page.getByRole("cell", { name: "write_orders" }).count() > 0 || (await page.locator("a", { hasText: "write" }).count()) > 0, "no write task listed");
  await shot("run");
  const firstTask = page.locator("table a[href*='/tasks/']").first();
  await firstTask.click();
  await page.getByRole("heading", { name: "Attempts" }).waitFor();
  await page.locator("pre.log .line").first().waitFor();
  await shot("task");
  await page.goto(`${BASE}/#/pipelines/ecommerce_orders`);
  await page.locator("table.grid").waitFor();
  await page.locator("#dag-title").waitFor();
  await page.locator(".graph-box svg g.node").first().waitFor();
  await shot("pipeline");

  step = "3. time travel";
  await page.goto(`${BASE}/#/tables/ecommerce.orders`);
  await page.getByRole("heading", { name: "Snapshots", exact: true }).waitFor();
  await page.getByRole("table", { name: "partitions of ecommerce.orders" }).locator("tbody tr").first().waitFor();
  const snaps = page.locator("ol.timeline > li");
  check((await snaps.count()) >= 2, "ecommerce.orders should have at least two snapshots");
  const previous = snaps.nth(1);
  const previousLabel = await previous.locator("strong").textContent();
  const previousId = previousLabel.split(" ")[0];
  await previous.getByRole("button", { name: "Rows" }).click();
  await page.getByRole("heading", { name: `Rows at snapshot ${previousId}` }).waitFor();
  await page.getByText(`rows as of snapshot ${previousId}`).waitFor();
  check((await page.getByRole("table", { name: `rows of ecommerce.orders at snapshot ${previousId}` }).locator("tbody tr").count()) > 0, "the preview shows no rows");
  await page.getByRole("button", { name: "Compare" }).click();
  await page.getByText(/rows added, .* removed/).waitFor();
  await shot("table");

  step = "4. rollback as admin";
  await previous.getByRole("button", { name: /roll back to snapshot/ }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Roll back" }).click();
  await page.locator("ol.timeline > li.current strong", { hasText: previousId }).waitFor();
  await shot("rolled-back");

  step = "4. a viewer cannot roll back";
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await signIn(VIEWER);
  check((await page.locator("#who").textContent()).includes("viewer"), "the header does not say viewer");
  await page.goto(`${BASE}/#/tables/ecommerce.orders`);
  await page.getByRole("heading", { name: "Snapshots", exact: true }).waitFor();
  await page.getByText("Rollback needs the admin role.").waitFor();
  const buttons = page.getByRole("button", { name: /roll back to snapshot/ });
  const n = await buttons.count();
  check(n >= 2, "no rollback buttons shown");
  for (let i = 0; i < n; i++) check(await buttons.nth(i).isDisabled(), `rollback button ${i} is enabled for a viewer`);
  const trigger = page.getByRole("link", { name: "Pipelines" });
  await trigger.click();
  await page.getByRole("heading", { name: "Pipelines" }).waitFor();
  check(await page.getByRole("button", { name: "Trigger" }).first().isDisabled(), "a viewer can trigger");
  await shot("viewer");

  step = "5. lineage to the raw files";
  await page.goto(`${BASE}/#/lineage?dataset=analytics.customer_360`);
  await page.locator(".graph-box svg g.node").first().waitFor();
  const nodes = await page.locator(".graph-box svg g.node").evaluateAll((els) => els.map((e) => e.getAttribute("data-node")));
  check(nodes.includes("analytics.customer_360"), `customer_360 missing from ${nodes}`);
  check(nodes.includes("ecommerce.orders"), `ecommerce.orders missing from ${nodes}`);
  check(nodes.some((n) => n.startsWith("raw:") && n.includes("orders")), `no raw order files in ${nodes}`);
  await shot("lineage");
  // Follow a column: click customer_360's lifetime_value.
  await page.locator('.graph-box svg g.row[data-node="analytics.customer_360"][data-row="lifetime_value"]').click();
  await page.waitForURL(/column=lifetime_value/);
  // The dataset graph stays drawn until the column graph replaces it; the
  // column graph is the one whose lifetime_value row is in focus.
  await page.locator('.graph-box svg g.row.focus[data-node="analytics.customer_360"][data-row="lifetime_value"]').waitFor();
  const colNodes = await page.locator(".graph-box svg g.node").evaluateAll((els) => els.map((e) => e.getAttribute("data-node")));
  check(colNodes.some((n) => n.startsWith("raw:")), `lifetime_value does not reach raw files: ${colNodes}`);
  // Centre on ecommerce.orders by its box, then ask for impact downstream.
  await page.locator('.graph-box svg g.node[data-node="ecommerce.orders"] > text').first().click();
  await page.waitForURL(/dataset=ecommerce.orders/);
  await page.goto(`${BASE}/#/lineage?dataset=ecommerce.orders&column=order_total&direction=downstream`);
  await page.locator(".graph-box svg g.node").first().waitFor();
  await page.getByRole("button", { name: "Impact of changing this column" }).click();
  await page.getByRole("heading", { name: /affects/ }).waitFor();
  check((await page.getByText("analytics.customer_360").count()) > 0, "impact does not reach customer_360");
  await shot("impact");

  step = "other pages";
  await page.goto(`${BASE}/#/search?q=orders`);
  await page.locator("ol.hits li").first().waitFor();
  await shot("search");
  await page.goto(`${BASE}/#/quality`);
  await page.getByRole("heading", { name: "Quality", exact: true }).waitFor();
  await page.locator("#main table").waitFor();
  await shot("quality");
  await page.goto(`${BASE}/#/sql`);
  await page.getByLabel("Query").fill("SELECT status, count(*) AS n FROM ecommerce.orders GROUP BY status ORDER BY status");
  await page.getByRole("button", { name: "Run" }).click();
  await page.getByText(/rows in \d+ ms/).waitFor();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
  const csvPath = join(SHOTS, "query.csv");
  await download.saveAs(csvPath);
  const { readFileSync } = await import("node:fs");
  const csv = readFileSync(csvPath, "utf8");
  check(csv.startsWith("status,n\r\n"), `CSV header: ${csv.slice(0, 40)}`);
  await shot("sql");

  step = "keyboard and theme";
  await page.goto(`${BASE}/#/`);
  await page.reload();
  await page.getByRole("heading", { name: "Pipelines" }).waitFor();
  await page.keyboard.press("Tab");
  const skip = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  check(skip === "Skip to content", `the first Tab stop is '${skip}', not the skip link`);
  await page.getByRole("button", { name: /Dark theme/ }).click();
  check((await page.evaluate(() => document.documentElement.dataset.theme)) === "dark", "the theme did not switch");
  await shot("pipelines-dark");
  await page.setViewportSize({ width: 420, height: 900 });
  await shot("pipelines-narrow");

  step = "offline";
  const outside = requests.filter((u) => !u.startsWith(BASE) && !u.startsWith("blob:") && !u.startsWith("data:"));
  check(outside.length === 0, `requests left the origin: ${outside.slice(0, 5)}`);
} catch (e) {
  problems.push(`${step}: ${e.message}`);
  try {
    await shot("failure");
  } catch (_) {
    // the page may be gone
  }
} finally {
  await browser.close();
}

if (problems.length) {
  console.error(`ui e2e: ${problems.length} problem(s):\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
console.log(`ui e2e: ok; screenshots in ${SHOTS}`);
