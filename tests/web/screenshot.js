// Makes docs/web-chat.png, the README's picture of the web chat: alice and
// bob in a direct chat and in the group "team", seen by alice while bob types.
// Run from tests/web with `npm run screenshot` after building the host.
'use strict';
const path = require('node:path');
const {
  REPO_ROOT,
  joinGroup,
  launchBrowser,
  makeScratchDir,
  messageLocator,
  openDirectChat,
  openPage,
  sendMessage,
  signIn,
  startHost,
} = require('./harness');

const OUTPUT = path.join(REPO_ROOT, 'docs', 'web-chat.png');
const VIEWPORT = { width: 1100, height: 680 };

const GROUP_CHAT = [
  ['alice', 'Morning! Is the release branch green?'],
  ['bob', 'Almost. One flaky test in the sync suite, rerunning it now.'],
  ['bob', 'All green. Tagging 1.4.0 in five minutes.'],
  ['alice', 'Perfect. I will post the changelog once the tag is up.'],
  ['bob', 'I restarted the server during the demo and both tabs caught up by themselves.'],
  ['alice', 'Nothing lost, nothing twice: that is the whole point of sync.'],
];

// Sends each line from its author's page and waits until the other page shows it.
async function converse(pages, lines) {
  for (const [author, text] of lines) {
    await sendMessage(pages[author], text);
    const reader = author === 'alice' ? pages.bob : pages.alice;
    await messageLocator(reader, text).waitFor();
  }
}

async function main() {
  const scratch = makeScratchDir();
  const host = await startHost({ db: scratch.db });
  const browser = await launchBrowser();
  try {
    const pages = {
      alice: await openPage(browser, host.pageUrl, VIEWPORT),
      bob: await openPage(browser, host.pageUrl, VIEWPORT),
    };
    await signIn(pages.alice, 'alice');
    await signIn(pages.bob, 'bob');

    await openDirectChat(pages.alice, 'bob');
    await openDirectChat(pages.bob, 'alice');
    await converse(pages, [
      ['bob', 'Lunch at 12:30?'],
      ['alice', 'Sure, see you there'],
    ]);

    await joinGroup(pages.alice, 'team');
    await joinGroup(pages.bob, 'team');
    await converse(pages, GROUP_CHAT);
    await messageLocator(pages.alice, GROUP_CHAT.at(-1)[1]).and(pages.alice.locator('[data-status="read"]')).waitFor();

    await pages.bob.getByLabel('Message', { exact: true }).pressSequentially('Ship it');
    await pages.alice.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    await pages.alice.screenshot({ path: OUTPUT });
    console.log(`wrote ${path.relative(process.cwd(), OUTPUT)}`);
  } finally {
    await browser.close();
    await host.stop();
    scratch.cleanup();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
