#!/usr/bin/env python3
"""s3util.py ENDPOINT CMD ...: the S3 side of tests/object_store.rs, through boto3 (installed
with moto): create-bucket B | iam-user B | upload B PREFIX DIR | get B KEY | put B KEY TEXT |
list B PREFIX."""
import os, sys
import boto3

endpoint, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
s3 = boto3.client('s3', endpoint_url=endpoint, aws_access_key_id='testing',
                  aws_secret_access_key='testing', region_name='us-east-1')
if cmd == 'create-bucket':
    s3.create_bucket(Bucket=args[0])
elif cmd == 'upload':
    bucket, prefix, root = args
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            key = prefix.rstrip('/') + '/' + os.path.relpath(p, root).replace(os.sep, '/')
            s3.upload_file(p, bucket, key)
elif cmd == 'get':
    sys.stdout.buffer.write(s3.get_object(Bucket=args[0], Key=args[1])['Body'].read())
elif cmd == 'put':
    s3.put_object(Bucket=args[0], Key=args[1], Body=args[2].encode())
elif cmd == 'iam-user':
    # Before moto checks credentials: a user allowed everything, its key, the bucket.
    iam = boto3.client('iam', endpoint_url=endpoint, aws_access_key_id='testing',
                       aws_secret_access_key='testing', region_name='us-east-1')
    iam.create_user(UserName='billrun')
    iam.put_user_policy(UserName='billrun', PolicyName='all', PolicyDocument=
                        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}')
    k = iam.create_access_key(UserName='billrun')['AccessKey']
    s3.create_bucket(Bucket=args[0])
    print(k['AccessKeyId'], k['SecretAccessKey'])
elif cmd == 'list':
    r = s3.list_objects_v2(Bucket=args[0], Prefix=args[1])
    for o in r.get('Contents', []):
        print(o['Key'])
else:
    sys.exit(f'unknown command {cmd}')
