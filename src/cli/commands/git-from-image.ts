// git:from-image: deploy an image the Docker engine already has as the app's next release.
import { UserError } from '../../errors.ts';
import { byName, defineCommand, type Command } from '../command.ts';

export const gitFromImageCommands: Command[] = [
  defineCommand({
    name: 'git:from-image',
    args: ['APP', 'IMAGE'],
    summary: 'deploy an image the Docker engine already has (its CMD is the web process)',
    scope: 'app',
    needsDaemon: true,
    async run(ctx, { app, args: [image], daemon }) {
      if (!/^[a-z0-9][a-z0-9._/:@-]{0,254}$/i.test(image)) throw new UserError('invalid_image', `"${image}" is not an image reference`, { hint: 'such as myapp:latest or sha256:…' });
      ctx.state.apps.require(app);
      await daemon().releases.deployImage(app, image, { by: byName(ctx), out: ctx.out });
    },
  }),
];
