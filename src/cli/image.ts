import { Command } from 'commander';
import { imageBuildCommand } from './image-build.js';
import { imageConvertCommand } from './image-convert.js';
import { imageCheckCommand, imageInspectCommand, imageUnpackCommand } from './image-inspect.js';

/** `damselfly image …`: build, convert, inspect, check and unpack accelerated images. */
export function imageCommand(): Command {
  const image = new Command('image').description(
    'build and convert accelerated images (EROFS bootstrap + deduplicated chunk blobs)',
  );
  image.addCommand(imageBuildCommand());
  image.addCommand(imageConvertCommand());
  image.addCommand(imageInspectCommand());
  image.addCommand(imageCheckCommand());
  image.addCommand(imageUnpackCommand());
  return image;
}
