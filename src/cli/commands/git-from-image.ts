// git:from-image: deploy an image the Docker engine already has as the app's next release. A key
// limited to apps may deploy only images its app built and those the admin allows.
import { byName, defineCommand, isScoped, type Command } from '../command.ts';
import { checkImageReference } from '../../image-reference.ts';
import { allowedStacks } from './buildpacks.ts';

export const gitFromImageCommands: Command[] = [
  defineCommand({
    name: 'git:from-image',
    args: ['APP', 'IMAGE'],
    summary: 'deploy an image the Docker engine already has (its CMD is the web process)',
    help: "A key limited to apps may deploy only images the app built (its own release images) and those an admin allows (buildpacks:allow-stack), never another app's.",
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [image], daemon }) {
      checkImageReference(image, 'myapp:latest or sha256:…');
      ctx.state.apps.require(app);
      // A key limited to apps deploys only the app's own images and those the admin allows.
      const allowed = isScoped(ctx) ? allowedStacks(ctx) : undefined;
      await daemon().releases.deployImage(app, image, { by: byName(ctx), out: ctx.out, ...(allowed ? { allowed } : {}) });
    },
  }),
];
